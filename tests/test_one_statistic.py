"""One statistic per figure: the TTFT p50 of a variant measured in several processes is the median
of the processes' medians (`suites.latency.headline`), and the report, the gate, `harness compare`,
the export and the history all print that one number — not the median of the pooled iterations,
which once made the report say 16.31 ms and `harness compare` 17.95 ms for the same run."""

from __future__ import annotations

import json
import re
import sqlite3
import statistics

from typer.testing import CliRunner

from harness.cli import app
from harness.results.compare import compare_runs
from harness.results.gate import gate
from harness.run.runner import finish
from harness.suites.latency import headline

from .test_compare_gate import clone_run, edit_result

#: Five processes whose medians disagree with the pooled iterations' median on purpose.
PROCESS_MEDIANS = [31.0, 33.5, 34.25, 52.0, 29.0]


def _recorded(first_run, tmp_path):  # noqa: ANN001, ANN202 - fixtures
    _, run_dir = first_run
    recorded = clone_run(run_dir, tmp_path, "recorded")

    def five_processes(suites: dict) -> None:
        suites["lat-small"]["process_medians"] = {**suites["lat-small"].get("process_medians", {}),
                                                  "ttft_ms": PROCESS_MEDIANS}
    edit_result(recorded, "base", five_processes)
    finish(recorded)
    return recorded


def test_report_gate_compare_export_and_history_print_the_same_ttft(first_run, tmp_path):
    recorded = _recorded(first_run, tmp_path)
    data = json.loads((recorded / "variants" / "base" / "result.json").read_text())
    lat = data["measurements"]["torch-eager"]["suites"]["lat-small"]
    value = headline(lat, "ttft_ms")[0]
    assert value == statistics.median(PROCESS_MEDIANS) != statistics.median(lat["samples"]["ttft_ms"])

    summary = json.loads((recorded / "results.json").read_text())
    base = next(v for v in summary["variants"] if v["name"] == "base")["runtimes"]["torch-eager"]
    assert base["latency"]["ttft_p50_ms"] == value

    html = (recorded / "report.html").read_text()
    assert re.search(rf">base<.*?{value:.2f}<span class=\"ci\">", html, re.S)

    _, checks, _ = gate(recorded)
    (check,) = [c for c in checks if c.variant == "base" and c.target == "max_ttft_ms"]
    assert check.message.startswith(f"max_ttft_ms: {value:.4g} ms")

    twin = clone_run(recorded, tmp_path, "twin")
    (change,) = [c for c in compare_runs(recorded, twin).changes if c.variant == "base" and c.metric == "TTFT p50 ms"]
    assert change.old == change.new == value

    out = CliRunner().invoke(app, ["export", str(recorded), "-o", str(tmp_path / "r.csv")])
    assert out.exit_code == 0, out.output
    import pandas as pd

    table = pd.read_csv(tmp_path / "r.csv")
    exported = table[(table.variant == "base") & (table.metric == "ttft_p50_ms")].value
    assert list(exported) == [value]

    with sqlite3.connect(recorded.parent / "history.sqlite") as conn:
        stored = conn.execute("SELECT value FROM measurements WHERE run_id = 'recorded' AND variant = 'base' "
                              "AND metric = 'ttft_p50_ms'").fetchall()
    assert stored == [(value,)]
