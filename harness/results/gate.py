"""The CI gate (exit codes in `harness.exits`, docs/ci.md): 0 when every gated variant ran, was
measured, met every target and (with a baseline) did not significantly regress; 1 when a target
is missed or a regression found; 3 when a gated measurement is missing — a failed variant, a
failed suite, a target nobody measured, a measurement this machine cannot make — since "not
measured" never passes; 2 on bad input.

A metric that cannot be compared with the baseline is reported as *skipped* with its reason, as
is a runtime that does not apply to a variant by design (the plan). Writes JUnit XML (one
testcase per variant × runtime × check; a missing measurement is an `<error>`) and, on request,
a Markdown summary for CI job pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from harness import exits
from harness.errors import RunDirError
from harness.results import rundir

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_ERROR = exits.OK, exits.GATE_FAIL, exits.USAGE, exits.GATE_ERROR
UNMEASURED_HINT = "run the gate where it can be measured, or set `gate: false` for this variant"


@dataclass
class Check:
    variant: str
    runtime: str
    target: str
    ok: bool
    message: str
    skipped: bool = False
    #: The check could not be decided: its measurement is missing, failed or impossible here.
    error: bool = False

    @property
    def mark(self) -> str:
        return "SKIP" if self.skipped else "ERROR" if self.error else "PASS" if self.ok else "FAIL"


def load_summary(run_dir: Path) -> dict[str, Any]:
    return rundir.RunDir(run_dir).read_summary()


def checks(summary: dict[str, Any]) -> list[Check]:
    """Every gated variant's checks; a run that gates no variant fails (a gate that checked nothing
    must not pass: e.g. a search whose every trial was stopped early)."""
    out: list[Check] = []
    if not any(v.get("gate", True) for v in summary["variants"]):
        out.append(Check("-", "-", "gated", False, "no variant is gated (every variant has gate: false, or a "
                                                    "search completed no trial): nothing was checked"))
    for variant in summary["variants"]:
        if not variant.get("gate", True):
            continue
        if variant["status"] != "ok":
            message = f"variant {variant['status']}: {variant.get('error')}"
            out.append(Check(variant["name"], "-", "ran", False, message, error=True))
            continue
        for runtime, reason in variant.get("not_applicable", {}).items():
            out.append(Check(variant["name"], runtime, "applicable", True, f"not applicable: {reason}", skipped=True))
        for runtime, data in variant["runtimes"].items():
            out += _headline_checks(variant["name"], runtime, data)
            out += _suite_checks(variant["name"], runtime, data)
            out += [_target_check(variant["name"], runtime, target, verdict)
                    for target, verdict in data.get("targets", {}).items()]
    return out


def _suite_checks(variant: str, runtime: str, data: dict[str, Any]) -> list[Check]:
    """Every planned suite that failed or cannot run here is an error of its own, target or not."""
    out = [Check(variant, runtime, f"suite:{suite}", False, f"suite '{suite}' failed: {reason}", error=True)
           for suite, reason in (data.get("errors") or {}).items()]
    out += [Check(variant, runtime, f"suite:{suite}", False, f"suite '{suite}' not measurable here: {reason}; "
                  f"{UNMEASURED_HINT}", error=True) for suite, reason in (data.get("unavailable") or {}).items()]
    out += [Check(variant, runtime, f"suite:{suite}", True, f"suite '{suite}' not applicable: {reason}", skipped=True)
            for suite, reason in (data.get("not_applicable") or {}).items()]
    return out


def _target_check(variant: str, runtime: str, target: str, verdict: dict[str, Any]) -> Check:
    if verdict["status"] == "not applicable":  # the runtime cannot measure it by design (the plan says why)
        return Check(variant, runtime, target, True, f"{target} {verdict.get('why', 'not applicable')}",
                     skipped=True)
    if verdict["status"] == "not measured":
        return Check(variant, runtime, target, False, f"{target} not measured ({verdict.get('why', '')}); "
                                                      "a target nobody measured is not met", error=True)
    if verdict["status"] == "undecided":
        return Check(variant, runtime, target, False, f"{target}: {verdict['value']:.4g} {verdict.get('unit', '')} "
                                                      f"vs limit {verdict['limit']} is undecided — {verdict['why']}",
                     error=True)
    noise = f" ({verdict['why']})" if verdict.get("why") else " (within noise)" if verdict.get("within_noise") else ""
    message = f"{target}: {verdict['value']:.4g} {verdict.get('unit', '')} vs limit {verdict['limit']}{noise}"
    return Check(variant, runtime, target, verdict["status"] == "pass", message)


def _headline_checks(variant: str, runtime: str, data: dict[str, Any]) -> list[Check]:
    """The checks suite kinds add on their headline entries (e.g. parity thresholds per export)."""
    from harness.results.kinds import headlines

    out: list[Check] = []
    for key, kind in headlines().items():
        if data.get(key):
            out += kind.gate_checks(variant, runtime, data[key])
    return out


def regression_checks(summary: dict[str, Any], comparison: Any) -> list[Check]:
    """One check per compared metric of every gated variant (regressions fail, undecided ones are errors —
    a change noise keeps from being decided never passes —, the rest pass or skip)."""
    from harness.results.compare import NEW, NOT_COMPARABLE, REGRESSION, UNDECIDED

    gated = {v["name"] for v in summary["variants"] if v.get("gate", True)}
    out = []
    for c in comparison.changes:
        if c.variant not in gated:
            continue
        detail = f"{c.old:.4g} -> {c.new:.4g} ({c.change}" if c.old is not None and c.new is not None else "("
        p = f", p={c.p_value:.2g}" if c.p_value is not None else ""
        message = f"vs baseline {comparison.old_run}: {c.metric} {c.verdict} {detail}{p}) {c.note}".replace(" ()", "")
        out.append(Check(c.variant, c.runtime, f"regression:{c.metric}", c.verdict not in (REGRESSION, UNDECIDED),
                         message, skipped=c.verdict in (NOT_COMPARABLE, NEW), error=c.verdict == UNDECIDED))
    return out


def write_junit(results: list[Check], path: Path) -> None:
    suite = ET.Element("testsuite", name="harness-gate", tests=str(len(results)),
                       failures=str(sum(not c.ok and not c.error for c in results)),
                       errors=str(sum(c.error for c in results)), skipped=str(sum(c.skipped for c in results)))
    for check in results:
        case = ET.SubElement(suite, "testcase", classname=f"{check.variant}.{check.runtime}", name=check.target)
        if check.skipped:
            ET.SubElement(case, "skipped", message=check.message)
        elif check.error:
            ET.SubElement(case, "error", message=check.message).text = check.message
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

    failed = [c for c in results if not c.ok and not c.error]
    errors = [c for c in results if c.error]
    lines = [f"## harness gate: {verdict(code)} — run `{run_id}`", "",
             f"{len(results)} checks, {len(failed)} failed, {len(errors)} not measured, "
             f"{sum(c.skipped for c in results)} skipped.", ""]
    lines += [f"> warning: {cell(w)}" for w in warnings]
    lines += ["", "| result | variant | runtime | check | detail |", "|---|---|---|---|---|"]
    for c in sorted(results, key=lambda c: (not c.error, c.ok, c.skipped)):
        lines.append(f"| {c.mark} | {cell(c.variant)} | {cell(c.runtime)} | {cell(c.target)} | {cell(c.message)} |")
    return "\n".join(lines) + "\n"


def exit_code(results: list[Check]) -> int:
    """3 when any gated measurement is missing (the gate cannot decide), else 1 on any failure, else 0."""
    if any(c.error for c in results):
        return EXIT_ERROR
    return EXIT_PASS if all(c.ok for c in results) else EXIT_FAIL


def verdict(code: int) -> str:
    return {EXIT_PASS: "passed", EXIT_FAIL: "FAILED",
            EXIT_ERROR: "ERROR (undecided or not measured)"}.get(code, "FAILED")


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
    code = exit_code(results)
    if markdown_path is not None:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        with markdown_path.open("a", encoding="utf-8") as handle:  # append: $GITHUB_STEP_SUMMARY is shared
            handle.write(markdown(results, summary["run_id"], code, warnings))
    return code, results, warnings
