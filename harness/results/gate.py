"""The CI gate: exit 0 when every gated variant ran, met every target and (with a baseline) did
not significantly regress; 1 otherwise; 2 on bad input (see docs/ci.md).

A target that could not be measured fails the gate (an unmeasured budget is not a met one). A
metric that cannot be compared with the baseline is reported as *skipped* with its reason — it
neither passes nor fails silently. Writes JUnit XML (one testcase per variant × runtime × check)
and, on request, a Markdown summary for CI job pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from harness.errors import RunDirError
from harness.results import rundir

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


@dataclass
class Check:
    variant: str
    runtime: str
    target: str
    ok: bool
    message: str
    skipped: bool = False

    @property
    def mark(self) -> str:
        return "SKIP" if self.skipped else "PASS" if self.ok else "FAIL"


def load_summary(run_dir: Path) -> dict[str, Any]:
    return rundir.RunDir(run_dir).read_summary()


def checks(summary: dict[str, Any]) -> list[Check]:
    out: list[Check] = []
    for variant in summary["variants"]:
        if not variant.get("gate", True):
            continue
        if variant["status"] != "ok":
            message = f"variant {variant['status']}: {variant.get('error')}"
            out.append(Check(variant["name"], "-", "ran", False, message))
            continue
        for runtime, reason in variant.get("not_applicable", {}).items():
            out.append(Check(variant["name"], runtime, "applicable", True, f"not applicable: {reason}", skipped=True))
        for runtime, data in variant["runtimes"].items():
            out += _headline_checks(variant["name"], runtime, data)
            unavailable = "; ".join(dict.fromkeys((data.get("unavailable") or {}).values()))
            for target, verdict in data.get("targets", {}).items():
                ok = verdict["status"] == "pass"
                if verdict["status"] == "not measured" and unavailable:  # e.g. Core ML prediction off macOS
                    out.append(Check(variant["name"], runtime, target, True,
                                     f"{target} not measurable here: {unavailable}", skipped=True))
                    continue
                if verdict["status"] == "not measured":
                    message = f"{target} not measured ({verdict.get('why', '')})"
                else:
                    noise = " (within noise)" if verdict.get("within_noise") else ""
                    message = (f"{target}: {verdict['value']:.4g} {verdict.get('unit', '')} vs limit "
                               f"{verdict['limit']}{noise}")
                out.append(Check(variant["name"], runtime, target, ok, message))
    return out


def _headline_checks(variant: str, runtime: str, data: dict[str, Any]) -> list[Check]:
    """The checks suite kinds add on their headline entries (e.g. parity thresholds per export)."""
    from harness.results.kinds import headlines

    out: list[Check] = []
    for key, kind in headlines().items():
        if data.get(key):
            out += kind.gate_checks(variant, runtime, data[key])
    return out


def regression_checks(summary: dict[str, Any], comparison: Any) -> list[Check]:
    """One check per compared metric of every gated variant (regressions fail, the rest pass or skip)."""
    from harness.results.compare import NEW, NOT_COMPARABLE, REGRESSION

    gated = {v["name"] for v in summary["variants"] if v.get("gate", True)}
    out = []
    for c in comparison.changes:
        if c.variant not in gated:
            continue
        detail = f"{c.old:.4g} -> {c.new:.4g} ({c.change}" if c.old is not None and c.new is not None else "("
        p = f", p={c.p_value:.2g}" if c.p_value is not None else ""
        message = f"vs baseline {comparison.old_run}: {c.metric} {c.verdict} {detail}{p}) {c.note}".replace(" ()", "")
        out.append(Check(c.variant, c.runtime, f"regression:{c.metric}", c.verdict != REGRESSION, message,
                         skipped=c.verdict in (NOT_COMPARABLE, NEW)))
    return out


def write_junit(results: list[Check], path: Path) -> None:
    suite = ET.Element("testsuite", name="harness-gate", tests=str(len(results)),
                       failures=str(sum(not c.ok for c in results)), skipped=str(sum(c.skipped for c in results)))
    for check in results:
        case = ET.SubElement(suite, "testcase", classname=f"{check.variant}.{check.runtime}", name=check.target)
        if check.skipped:
            ET.SubElement(case, "skipped", message=check.message)
        elif not check.ok:
            ET.SubElement(case, "failure", message=check.message).text = check.message
        else:
            ET.SubElement(case, "system-out").text = check.message
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def markdown(results: list[Check], run_id: str, code: int, warnings: list[str]) -> str:
    """A CI job summary: verdict first, then failures, then everything else."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    failed = [c for c in results if not c.ok]
    lines = [f"## harness gate: {'passed' if code == EXIT_PASS else 'FAILED'} — run `{run_id}`", "",
             f"{len(results)} checks, {len(failed)} failed, {sum(c.skipped for c in results)} skipped.", ""]
    lines += [f"> warning: {cell(w)}" for w in warnings]
    lines += ["", "| result | variant | runtime | check | detail |", "|---|---|---|---|---|"]
    for c in sorted(results, key=lambda c: (c.ok, c.skipped)):
        lines.append(f"| {c.mark} | {cell(c.variant)} | {cell(c.runtime)} | {cell(c.target)} | {cell(c.message)} |")
    return "\n".join(lines) + "\n"


def resolve_baseline(run_dir: Path, baseline: str) -> Path:
    """A run directory as given, or a name stored with `harness baseline set`."""
    import sqlite3

    from harness.results.history import get_baseline, list_baselines

    path = Path(baseline)
    if path.is_dir():
        return path
    db = rundir.RunDir(run_dir).history_file
    try:
        found = get_baseline(db, baseline) if db.exists() else None
        names = [b["name"] for b in list_baselines(db)] if db.exists() else []
    except sqlite3.DatabaseError as exc:
        raise RunDirError(f"history database '{db}' is unusable ({exc}); "
                          "give the baseline as a run directory") from None
    if found is None:
        raise RunDirError(f"baseline '{baseline}' is neither a run directory nor a stored baseline name "
                          f"(stored: {names or 'none'}); use `harness baseline set NAME RUN_DIR`")
    return Path(found["path"])


def gate(run_dir: Path, junit: Path | None = None, baseline: str | None = None,
         markdown_path: Path | None = None) -> tuple[int, list[Check], list[str]]:
    """Run every check; return the exit code, the checks and warnings about the comparison."""
    from harness.results.compare import compare_runs

    summary = load_summary(run_dir)
    results = checks(summary)
    warnings: list[str] = []
    if baseline is not None:
        comparison = compare_runs(resolve_baseline(run_dir, baseline), run_dir)
        results += regression_checks(summary, comparison)
        warnings = comparison.warnings
    write_junit(results, junit or rundir.RunDir(run_dir).junit_file)
    code = EXIT_PASS if all(c.ok for c in results) else EXIT_FAIL
    if markdown_path is not None:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        with markdown_path.open("a", encoding="utf-8") as handle:  # append: $GITHUB_STEP_SUMMARY is shared
            handle.write(markdown(results, summary["run_id"], code, warnings))
    return code, results, warnings
