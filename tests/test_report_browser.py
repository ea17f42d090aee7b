"""The HTML report in a real browser: headless Chromium (Debian's, installed by .ci/run) driven by
Playwright. Charts must render without console errors, and a model answer containing markup must
show as text and run nothing. A screenshot is kept in test-artifacts/ for a human to look at."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.run.runner import finish

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
PAYLOAD = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (installed by .ci/run)")]


def poisoned_run(run_dir: Path, root: Path) -> Path:
    """A copy of a real run where one variant's answer to a gallery item is an XSS payload."""
    target = root / "poisoned"
    shutil.copytree(run_dir, target)
    path = target / "variants" / "int8-llm" / "result.json"
    data = json.loads(path.read_text())
    data["measurements"]["torch-eager"]["suites"]["acc-small"]["items"][0]["prediction"] = PAYLOAD
    path.write_text(json.dumps(data))
    finish(target)
    return target


def test_report_renders_in_chromium_and_escapes_model_output(first_run, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    _, run_dir = first_run
    report = poisoned_run(run_dir, tmp_path) / "report.html"
    assert PAYLOAD not in report.read_text()  # escaped in the file itself
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
                else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("request", lambda r: problems.append(f"network request: {r.url}")
                if not r.url.startswith(("file:", "data:")) else None)
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        charts = page.locator("div.plotly-graph-div")
        assert charts.count() >= 8
        page.wait_for_function("document.querySelectorAll('div.plotly-graph-div .main-svg').length >= "
                               f"{charts.count()}", timeout=30_000)
        for index in range(charts.count()):  # each chart drew real marks in a real box
            box = charts.nth(index).bounding_box()
            assert box and box["width"] > 300 and box["height"] > 250
        assert page.locator("div.plotly-graph-div .point, div.plotly-graph-div .bars path, "
                            "div.plotly-graph-div .box path").count() > 10
        assert page.evaluate("window.__pwned") is None  # the payload ran nothing
        answers = page.locator("td.answer").all_inner_texts()
        assert PAYLOAD in answers  # ...and is shown to the reader as the text the model produced
        assert page.locator("img.thumb").count() > 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        browser.close()
    assert problems == []
