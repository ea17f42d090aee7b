"""The HTML report in a real browser: headless Chromium (Debian's, installed by .ci/run) driven by
Playwright, on a copy of a real run whose recipe is edited so the recommendation is known.

Checked: the page fits a 1400 px window (no horizontal scrollbar), the recommendation box names
the expected variant, the primary frontier draws labels that overlap nothing, every chart renders
without console errors or network requests, and markup placed in every kind of user string (a
model answer, a suite description, an error message, the recipe text and description) shows as
text and runs nothing. Screenshots are kept in test-artifacts/ for a human to look at."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

from harness.run.runner import finish

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def payload(where: str) -> str:
    return f'<script>window.__pwned = "{where}"</script><img src=x onerror="window.__pwned = \'{where}\'">'


#: Where a user string reaches the page → its payload.
PAYLOADS = {where: payload(where) for where in ("answer", "suite", "error", "recipe", "description")}

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (installed by .ci/run)")]


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def constructed_run(run_dir: Path, root: Path) -> Path:
    """A copy of a real run (base, int8-llm, crash, res-32) with a known recommendation and a markup
    payload in every kind of user string. The recipe selects on size with latency off (timings on a
    busy machine decide nothing) and min_retention 0.5: base and int8-llm meet every target (res-32
    may not), and int8-llm is the smaller by far, so it is the one to recommend."""
    target = root / "decides"
    shutil.copytree(run_dir, target)

    def answer(data):
        data["measurements"]["torch-eager"]["suites"]["acc-small"]["items"][0]["prediction"] = PAYLOADS["answer"]

    def crash(data):
        data["error"] = PAYLOADS["error"]

    def suite(data):
        data["suites"][0]["description"] = PAYLOADS["suite"]

    def recipe(data):
        data["spec"].update(select="size_mb", description=PAYLOADS["description"])
        data["spec"]["targets"].update(max_ttft_ms=None, max_size_mb=100.0, max_peak_memory_mb=100000.0,
                                       min_retention=0.5)

    _edit_json(target / "variants" / "int8-llm" / "result.json", answer)
    _edit_json(target / "variants" / "crash" / "result.json", crash)
    _edit_json(target / "run.json", suite)
    _edit_json(target / "recipe.resolved.json", recipe)
    with (target / "recipe.yaml").open("a") as f:
        f.write(f"# {PAYLOADS['recipe']}\n")
    finish(target)
    return target


def _boxes_overlap(a: dict, b: dict) -> bool:
    return min(a["right"], b["right"]) > max(a["left"], b["left"]) and \
        min(a["bottom"], b["bottom"]) > max(a["top"], b["top"])


def test_report_decides_fits_the_window_and_escapes_every_user_string(first_run, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    _, run_dir = first_run
    run = constructed_run(run_dir, tmp_path)
    summary = json.loads((run / "results.json").read_text())
    sizes = {v["name"]: v["runtimes"]["torch-eager"]["size"]["total_mb"] for v in summary["variants"]
             if v["status"] == "ok"}
    assert sizes["int8-llm"] < 0.9 * sizes["base"]  # the premise of the expected recommendation
    report = run / "report.html"
    text = report.read_text()
    for where, markup in PAYLOADS.items():
        assert markup not in text, where  # escaped in the file itself
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
                else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("request", lambda r: problems.append(f"network request: {r.url}")
                if not r.url.startswith(("file:", "data:")) else None)
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        charts = page.locator("div.plotly-graph-div")
        page.wait_for_function("document.querySelectorAll('div.plotly-graph-div .main-svg').length >= "
                               f"{charts.count()}", timeout=30_000)

        # the decision comes first and names the expected variant
        assert page.locator("body > *").first.evaluate("e => e.tagName") == "H1"
        box = page.locator("#recommendation")
        assert box.is_visible() and page.locator("#recommended-variant").inner_text() == "int8-llm"
        assert page.evaluate("document.querySelector('#recommendation').compareDocumentPosition("
                             "document.querySelector('table.variants')) & Node.DOCUMENT_POSITION_FOLLOWING")
        assert "size (MB)" in box.inner_text() and "McNemar" in box.inner_text()
        banners = page.locator("div.banner").all_inner_texts()
        assert any("variant crash failed" in b for b in banners)

        # fits a 1400 px window: no horizontal scrollbar
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report-top.png"))
        assert page.evaluate("document.documentElement.scrollWidth") <= 1400

        # one primary frontier, open; its labels overlap no other label; the other pairs on demand
        primary = page.locator(".primary-frontier")
        assert primary.count() == 1 and primary.is_visible()
        primary.screenshot(path=str(ARTIFACTS / "report-frontier.png"))
        labels = [page.locator(".primary-frontier g.annotation rect.bg").nth(i).bounding_box()
                  for i in range(page.locator(".primary-frontier g.annotation rect.bg").count())]
        assert len(labels) >= 3  # base, int8-llm, res-32
        boxes = [{"left": b["x"], "top": b["y"], "right": b["x"] + b["width"], "bottom": b["y"] + b["height"]}
                 for b in labels]
        assert not any(_boxes_overlap(a, b) for a, b in itertools.combinations(boxes, 2))
        pairs = page.locator("details.pairs")
        assert pairs.count() == 1 and pairs.get_attribute("open") is None
        pairs.locator("summary").click()
        for index in range(charts.count()):  # each chart drew real marks in a real box
            box_ = charts.nth(index).bounding_box()
            assert box_ and box_["width"] > 300 and box_["height"] > 250
        assert page.locator("div.plotly-graph-div .point, div.plotly-graph-div .bars path, "
                            "div.plotly-graph-div .box path").count() > 10
        assert page.evaluate("document.documentElement.scrollWidth") <= 1400  # still, with the pairs open

        # every payload ran nothing and reads as the text it was
        assert page.evaluate("window.__pwned") is None
        assert page.locator("img[src='x']").count() == 0
        assert PAYLOADS["answer"] in page.locator("td.answer").all_inner_texts()
        assert PAYLOADS["suite"] in page.locator("#suites").inner_text()
        assert PAYLOADS["error"] in page.locator("details summary.failed").first.inner_text()
        assert any(PAYLOADS["error"] in b for b in banners)
        assert PAYLOADS["recipe"] in page.locator("#recipe").inner_text()
        assert PAYLOADS["description"] in page.locator("#description").inner_text()
        assert page.locator("img.thumb").count() > 0
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        browser.close()
    assert problems == []
