"""`harness compare`, `gate --baseline`, history trends and export, on real runs of the nano reference.

Most cases clone one real run and change exactly one thing in the clone (slower samples, wrong
answers, a redefined suite), so each verdict has a known right answer.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.errors import RunDirError
from harness.results.compare import IMPROVEMENT, NEW, NOT_COMPARABLE, REGRESSION, SAME, compare_runs
from harness.results.gate import gate
from harness.run.runner import finish, run

from .runs import make_recipe


def clone_run(run_dir: Path, root: Path, run_id: str) -> Path:
    target = root / run_id
    shutil.copytree(run_dir, target)
    manifest = json.loads((target / "run.json").read_text())
    manifest["run_id"] = run_id
    (target / "run.json").write_text(json.dumps(manifest))
    return target


def edit_result(run_dir: Path, variant: str, change) -> None:  # noqa: ANN001 - a callable editing the dict
    path = run_dir / "variants" / variant / "result.json"
    data = json.loads(path.read_text())
    change(data["measurements"]["torch-eager"]["suites"])
    path.write_text(json.dumps(data))


def scale(factor: float):  # noqa: ANN201 - an edit for `edit_result`
    """12 spread TTFT samples times `factor`, with the p50 a measurement derives from them: enough for
    p < 0.01 between factors, and, unlike the measured samples, no noisy iteration of a busy machine
    can overlap two factors."""
    def edit(s: dict) -> None:
        ttft = [(10 + 0.2 * i) * factor for i in range(12)]
        s["lat-small"]["samples"]["ttft_ms"] = ttft
        s["lat-small"]["stats"]["ttft_ms"]["p50"] = statistics.median(ttft)
    return edit


def verdicts(result, variant: str) -> dict[str, str]:  # noqa: ANN001
    return {c.metric: c.verdict for c in result.changes if c.variant == variant}


def test_a_run_against_its_own_copy_has_no_regression(first_run, tmp_path):
    _, run_dir = first_run
    twin = clone_run(run_dir, tmp_path, "twin")
    result = compare_runs(run_dir, twin)
    assert result.regressions == []
    base = verdicts(result, "base")
    assert base["acc-small score"] == SAME and base["TTFT p50 ms"] == SAME and base["size MB"] == SAME
    assert verdicts(result, "crash") == {"all": NOT_COMPARABLE}  # failed in both: nothing to compare


def test_slower_samples_are_a_regression_and_faster_an_improvement(first_run, tmp_path):
    _, run_dir = first_run
    ref, new = clone_run(run_dir, tmp_path, "ref"), clone_run(run_dir, tmp_path, "new")

    for variant in ("base", "int8-llm"):
        edit_result(ref, variant, scale(1.0))
    edit_result(new, "base", scale(2.0))  # unpaired (no rounds): beyond the x1.5 allowance for drift between runs
    edit_result(new, "int8-llm", scale(0.5))
    result = compare_runs(ref, new)
    assert verdicts(result, "base")["TTFT p50 ms"] == REGRESSION
    assert verdicts(result, "base")["decode per token p50 ms"] == SAME
    assert verdicts(result, "int8-llm")["TTFT p50 ms"] == IMPROVEMENT
    change = next(c for c in result.changes if c.variant == "base" and c.metric == "TTFT p50 ms")
    assert change.change == "x2.000" and change.p_value < 0.01 and change.old == pytest.approx(11.1)


def test_a_small_but_significant_slowdown_below_the_ratio_is_not_a_regression(first_run, tmp_path):
    _, run_dir = first_run
    a, b = clone_run(run_dir, tmp_path, "a"), clone_run(run_dir, tmp_path, "b")
    edit_result(a, "base", lambda s: s["lat-small"]["samples"].update(ttft_ms=[10.0 + i * 0.01 for i in range(30)]))
    edit_result(b, "base", lambda s: s["lat-small"]["samples"].update(ttft_ms=[10.5 + i * 0.01 for i in range(30)]))
    change = next(c for c in compare_runs(a, b).changes if c.variant == "base" and c.metric == "TTFT p50 ms")
    assert change.p_value < 1e-6 and change.verdict == SAME  # 5 % slower: real, but under the 10 % policy


def test_a_shift_within_process_noise_is_not_a_regression(first_run, tmp_path):
    """Every iteration is slower, but other processes of the baseline were as slow: not a regression."""
    _, run_dir = first_run
    a, b = clone_run(run_dir, tmp_path, "a"), clone_run(run_dir, tmp_path, "b")

    def timings(values: list[float], process_medians: list[float]):  # noqa: ANN202
        def edit(s):  # noqa: ANN001, ANN202
            s["lat-small"]["samples"]["ttft_ms"] = values
            s["lat-small"]["process_medians"] = {"ttft_ms": process_medians}
        return edit
    edit_result(a, "base", timings([10.0 + 0.01 * i for i in range(30)], [10.1, 15.2, 14.9, 10.0, 15.1]))
    edit_result(b, "base", timings([15.0 + 0.01 * i for i in range(30)], [15.1, 14.8, 15.3, 15.0, 14.9]))
    change = next(c for c in compare_runs(a, b).changes if c.variant == "base" and c.metric == "TTFT p50 ms")
    assert change.verdict == SAME and change.p_value > 0.01 and "process medians" in change.note
    edit_result(a, "base", timings([9.0 + 0.01 * i for i in range(30)], [9.1, 9.2, 8.9, 9.0, 9.3]))
    change = next(c for c in compare_runs(a, b).changes if c.variant == "base" and c.metric == "TTFT p50 ms")
    # 5 vs 5 processes, all apart: p = 1/252, significant alone but not over the comparison's ~20 tests
    assert change.verdict == SAME and change.p_value < 0.01 <= change.p_adjusted
    assert "false-discovery correction" in change.note
    edit_result(a, "base", timings([9.0 + 0.01 * i for i in range(30)], [9.1, 9.2, 8.9, 9.0, 9.3, 9.1, 8.8, 9.2]))
    edit_result(b, "base", timings([15.0 + 0.01 * i for i in range(30)],
                                   [15.1, 14.8, 15.3, 15.0, 14.9, 15.2, 15.0, 14.7]))
    change = next(c for c in compare_runs(a, b).changes if c.variant == "base" and c.metric == "TTFT p50 ms")
    assert change.verdict == REGRESSION and change.p_adjusted < 0.01  # 8 vs 8: p = 1/12870 survives it
    assert "beyond the machine's drift between runs" in change.note  # x1.65: past the unpaired x1.5


def test_lost_answers_are_an_accuracy_regression(first_run, tmp_path):
    _, run_dir = first_run
    worse = clone_run(run_dir, tmp_path, "worse")

    def break_answers(suites):
        for item in suites["acc-small"]["items"][:24]:
            if item["score"] >= 1.0:
                item["score"], item["prediction"] = 0.0, "wrong"
    edit_result(worse, "base", break_answers)
    assert verdicts(compare_runs(run_dir, worse), "base")["acc-small score"] == REGRESSION


def test_what_cannot_be_compared_is_said_not_passed(first_run, tmp_path):
    _, run_dir = first_run
    changed = clone_run(run_dir, tmp_path, "changed")
    manifest = json.loads((changed / "run.json").read_text())
    next(s for s in manifest["suites"] if s["name"] == "acc-small")["limit"] = 30
    manifest["variants"] = [v for v in manifest["variants"] if v != "res-32"] + ["brand-new"]
    (changed / "run.json").write_text(json.dumps(manifest))
    result = compare_runs(run_dir, changed)
    change = next(c for c in result.changes if c.variant == "base" and c.metric == "acc-small")
    assert change.verdict == NOT_COMPARABLE and "limit: 60 vs 30" in change.note
    assert verdicts(result, "brand-new") == {"all": NEW}
    assert verdicts(result, "res-32") == {"all": NOT_COMPARABLE}

    manifest["report_version"] = 0
    (changed / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(RunDirError, match="report format 0"):
        compare_runs(run_dir, changed)
    out = CliRunner().invoke(app, ["compare", str(run_dir), str(changed)])
    assert out.exit_code == 2 and "report format 0" in out.output and "Traceback" not in out.output


def test_gate_with_a_stored_baseline_markdown_and_skips(first_run, tmp_path):
    _, run_dir = first_run
    root = tmp_path / "reports"
    root.mkdir()
    old, new = clone_run(run_dir, root, "old"), clone_run(run_dir, root, "new")
    for d in (old, new):  # gate only the variants that can pass, with lenient accuracy (res-32 loses real accuracy)
        resolved = json.loads((d / "recipe.resolved.json").read_text())
        for v in resolved["variants"]:
            v["gate"] = v["name"] in ("base", "int8-llm")
        resolved["spec"]["targets"]["max_ttft_ms"] = None  # CI machines vary; this test is about regressions
        (d / "recipe.resolved.json").write_text(json.dumps(resolved))
        finish(d)
    runner = CliRunner()
    assert runner.invoke(app, ["baseline", "set", "main", str(old)]).exit_code == 0
    summary = tmp_path / "summary.md"
    out = runner.invoke(app, ["gate", str(new), "--baseline", "main", "--markdown", str(summary)])
    assert out.exit_code == 0, out.output
    assert "regression:TTFT p50 ms" in (new / "gate.junit.xml").read_text()
    assert summary.read_text().startswith("## harness gate: passed")

    edit_result(new, "int8-llm", scale(3.0))
    edit_result(old, "int8-llm", scale(1.0))
    code, checks, _ = gate(new, baseline="main", markdown_path=summary)
    assert code == 1
    failed = [c for c in checks if not c.ok]
    assert [(c.variant, c.target) for c in failed] == [("int8-llm", "regression:TTFT p50 ms")]
    assert "| FAIL | int8-llm |" in summary.read_text()

    out = runner.invoke(app, ["gate", str(new), "--baseline", "nightly"])
    assert out.exit_code == 2 and "stored: ['main']" in out.output


def test_a_corrupt_history_database_is_a_clear_message(first_run, tmp_path):
    _, run_dir = first_run
    root = tmp_path / "reports"
    root.mkdir()
    new = clone_run(run_dir, root, "new")
    (root / "history.sqlite").write_bytes(b"this is not sqlite" * 100)
    out = CliRunner().invoke(app, ["gate", str(new), "--baseline", "main"])
    assert out.exit_code == 2 and "unusable" in out.output
    summary = finish(new)  # the report still renders; the warning says why history is missing
    assert summary["warnings"] and "unusable" in summary["warnings"][0]
    assert "history database unusable" in (new / "report.html").read_text()


def test_history_trends_and_listing(first_run, tmp_path):
    _, run_dir = first_run
    root = tmp_path / "reports"
    root.mkdir()
    for run_id in ("r1", "r2"):
        finish(clone_run(run_dir, root, run_id))
    html = (root / "r2" / "report.html").read_text()
    assert "2 runs of &#39;pipe&#39;" in html and "TTFT p50 (ms) across runs" in html
    out = CliRunner().invoke(app, ["history", "--output", str(root), "--recipe", "pipe"])
    assert out.exit_code == 0 and "r1" in out.output and "r2" in out.output
    with sqlite3.connect(root / "history.sqlite") as conn:
        assert conn.execute("SELECT COUNT(DISTINCT run_id) FROM measurements").fetchone()[0] == 2


def test_export_csv_and_parquet(first_run, tmp_path):
    import pandas as pd

    _, run_dir = first_run
    runner = CliRunner()
    assert runner.invoke(app, ["export", str(run_dir), "-o", str(tmp_path / "r.csv")]).exit_code == 0
    assert runner.invoke(app, ["export", str(run_dir), "-o", str(tmp_path / "r.parquet")]).exit_code == 0
    csv, parquet = pd.read_csv(tmp_path / "r.csv"), pd.read_parquet(tmp_path / "r.parquet")
    assert len(csv) == len(parquet) > 20
    assert list(csv.columns) == ["run_id", "recipe", "variant", "runtime", "metric", "value", "ci_low", "ci_high"]
    base = csv[(csv.variant == "base") & (csv.metric == "acc-small.score")]
    assert len(base) == 1 and 0.7 <= base.value.iloc[0] <= 1.0
    assert ((csv.variant == "crash") & (csv.metric == "failed")).sum() == 1
    assert not csv.duplicated(["variant", "runtime", "metric"]).any()
    out = runner.invoke(app, ["export", str(run_dir), "-o", str(tmp_path / "r.xlsx")])
    assert out.exit_code == 2 and "use --format csv or parquet" in out.output


def test_injected_slowdown_is_caught_by_the_gate(tmp_path, nano_dir):
    """Two real runs: the second slows the vision encoder by 30 ms per call; the gate must fail it."""
    suites = "[lat-gate, size]"
    # only targets these suites measure: an unmeasured one would be a gate ERROR (exit 3)
    targets = "{max_ttft_ms: 1000, max_size_mb: 100, max_peak_memory_mb: null, min_retention: null}"
    first = run(make_recipe(tmp_path / "a", "- {name: base}\n- {name: other}\n", suites=suites, targets=targets),
                output=tmp_path / "reports", progress=False)
    slowed = "- {name: base}\n- {name: other, steps: [{kind: fault, mode: slow, milliseconds: 30}]}\n"
    second = run(make_recipe(tmp_path / "b", slowed, suites=suites, targets=targets), output=tmp_path / "reports",
                 progress=False)
    code, checks, warnings = gate(second, baseline=str(first))
    failed = {(c.variant, c.target) for c in checks if c.mark == "FAIL"}
    assert ("other", "regression:TTFT p50 ms") in failed
    assert code == (3 if any(c.error for c in checks) else 1)  # an undecided check outranks a failure
    # the unchanged variant is not blamed; judged on raw medians (nothing to pair it with across runs),
    # drift of the machine between the runs may leave it undecided (an ERROR that says so), never a FAIL
    assert ("base", "regression:TTFT p50 ms") not in failed
    assert any("different steps" in w for w in warnings)
