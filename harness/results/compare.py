"""Compare two runs variant by variant: what changed, and whether it is more than noise.

Each suite kind says how its results compare (`SuiteKind.compare`): latency by the ratio of
medians and a one-sided Mann-Whitney U test, scored suites by paired tests on the same items,
memory by non-overlapping ranges, size by the exact ratio. Anything that cannot be compared (a
suite defined differently, a variant missing or failed, an older run format, a kind without a
comparison) is reported as *not comparable* with the reason — never as "no change".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import RunDirError
from harness.results import rundir
from harness.results.kinds import kind_of

REGRESSION, IMPROVEMENT, SAME, NOT_COMPARABLE, NEW = (
    "regression", "improvement", "no significant change", "not comparable", "new")
#: A change of regression size that noise keeps from being decided: the gate errors, never passes.
UNDECIDED = "undecided"


@dataclass
class Change:
    variant: str
    runtime: str
    metric: str
    verdict: str
    old: float | None = None
    new: float | None = None
    change: str = ""
    p_value: float | None = None
    note: str = ""
    #: `p_value` after the false-discovery correction over every test of the comparison.
    p_adjusted: float | None = None


@dataclass
class RunComparison:
    old_run: str
    new_run: str
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == REGRESSION]

    def to_json(self) -> dict[str, Any]:
        return {"old_run": self.old_run, "new_run": self.new_run, "warnings": self.warnings,
                "changes": [asdict(c) for c in self.changes]}


@dataclass
class LoadedRun:
    path: Path
    plan: dict[str, Any]
    spec: dict[str, Any]
    results: dict[str, dict[str, Any]]
    environment: dict[str, Any]


def load_run(path: Path) -> LoadedRun:
    """A finished run directory, checked to be in a format this version can compare."""
    run = rundir.open_run(path)
    plan = run.read_plan()
    version = plan.get(rundir.FORMAT_KEY, 0)
    if version != rundir.RUN_FORMAT_VERSION:
        raise RunDirError(f"run '{path}' was written by report format {version}, this harness reads "
                          f"{rundir.RUN_FORMAT_VERSION}; re-run its recipe to compare it")
    return LoadedRun(path, plan, run.read_resolved_spec(), run.read_variant_results(plan["variants"]),
                     run.read_environment())


def _suites(run: LoadedRun, variant: str, runtime: str) -> dict[str, Any]:
    return run.results.get(variant, {}).get("measurements", {}).get(runtime, {}).get("suites", {})


def _suite_definitions(run: LoadedRun) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in run.plan.get("suites", [])}


def _suite_changes(name: str, old: dict[str, Any], new: dict[str, Any], variant: str, runtime: str,
                   policy: Any, bases: tuple[dict[str, Any] | None, dict[str, Any] | None]) -> list[Change]:
    """The kind's changes; `bases`: the same suite of each run's baseline variant (None for the
    baseline variant itself), for kinds that judge a change relative to it (latency)."""
    import inspect

    kind = kind_of(new.get("kind"))
    if kind is None:
        return [Change(variant, runtime, name, NOT_COMPARABLE,
                       note=f"suite kind '{new.get('kind')}' is not installed here")]
    if "bases" in inspect.signature(kind.compare).parameters:
        return kind.compare(name, old, new, variant, runtime, policy, bases=bases)
    return kind.compare(name, old, new, variant, runtime, policy)


def _base_suite(run: LoadedRun, variant: str, runtime: str, name: str) -> dict[str, Any] | None:
    """The variant's baseline's result of this suite (its own model's in a cross-model run; None when
    `variant` is the baseline or it has none)."""
    from harness.results.baselines import baseline_of

    baseline = baseline_of(run.plan, variant)
    if baseline in (None, variant):
        return None
    found = _suites(run, baseline, runtime).get(name)
    return found if found and found.get("status") == "ok" else None


def _without_none(value: Any) -> Any:
    """A definition with unset (None) fields dropped: fields added later with a None default must not
    make runs recorded before them look differently defined."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


def _definition_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    a, b = _without_none(a), _without_none(b)
    fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k != "description")
    return ", ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in fields[:3]) if fields else None


def _variant_changes(old: LoadedRun, new: LoadedRun, variant: str, policy: dict[str, Any]) -> list[Change]:
    """Suite by suite on every runtime, for a variant that ran in both runs."""
    old_defs, new_defs = _suite_definitions(old), _suite_definitions(new)
    out: list[Change] = []
    for runtime in new.results[variant].get("measurements", {}):
        old_suites, new_suites = _suites(old, variant, runtime), _suites(new, variant, runtime)
        for name, data in new_suites.items():
            if name not in old_defs:
                continue  # reported once as a run-level warning
            if data.get("status") == "not applicable":
                continue  # by design this runtime does not measure the suite's kind: nothing to compare
            differs = _definition_difference(old_defs[name], new_defs.get(name, {}))
            if differs:
                reason = f"suite '{name}' is defined differently ({differs})"
            elif name not in old_suites:
                reason = f"runtime '{runtime}' did not run in the baseline"
            elif data.get("status") != "ok" or old_suites[name].get("status") != "ok":
                reason = f"suite failed ({data.get('error') or old_suites[name].get('error')})"
            else:
                bases = (_base_suite(old, variant, runtime, name), _base_suite(new, variant, runtime, name))
                out.extend(_suite_changes(name, old_suites[name], data, variant, runtime, policy, bases))
                continue
            out.append(Change(variant, runtime, name, NOT_COMPARABLE, note=reason))
    return out


def compare_runs(old_dir: Path, new_dir: Path, policy: dict[str, Any] | None = None) -> RunComparison:
    """Every variant × runtime × metric of `new_dir` against `old_dir` (the baseline)."""
    from harness.spec.recipe import RegressionPolicy

    old, new = load_run(old_dir), load_run(new_dir)
    policy = policy or new.spec.get("regression") or RegressionPolicy().model_dump()
    result = RunComparison(old.plan["run_id"], new.plan["run_id"])
    if old.plan.get("recipe") != new.plan.get("recipe"):
        result.warnings.append(f"different recipes ('{old.plan.get('recipe')}' vs "
                               f"'{new.plan.get('recipe')}'): variants are matched by name")
    old_host = (old.environment.get("cpu"), old.environment.get("hostname"))
    new_host = (new.environment.get("cpu"), new.environment.get("hostname"))
    if old_host != new_host:
        result.warnings.append(f"runs come from different machines ({old_host} vs {new_host}): "
                               "latency and memory differences include the machine")
    old_defs, new_defs = _suite_definitions(old), _suite_definitions(new)
    if not set(old_defs) & set(new_defs):
        raise RunDirError(f"runs '{old_dir}' and '{new_dir}' share no suite (baseline: {sorted(old_defs)}, "
                          f"new: {sorted(new_defs)}); nothing can be compared")
    for name in sorted(set(old_defs) ^ set(new_defs)):
        where = "baseline" if name in old_defs else "new run"
        result.warnings.append(f"suite '{name}' ran only in the {where}: not compared")
    for variant in new.plan["variants"]:
        if variant not in old.results or old.results[variant].get("status") == "pending":
            result.changes.append(Change(variant, "-", "all", NEW, note="not in the baseline run: nothing to compare"))
            continue
        states = (old.results[variant].get("status"), new.results[variant].get("status"))
        if states != ("ok", "ok"):
            result.changes.append(Change(variant, "-", "all", REGRESSION if states[0] == "ok" else NOT_COMPARABLE,
                                         note=f"status {states[0]} in baseline, {states[1]} now"))
            continue
        if old.results[variant].get("steps") != new.results[variant].get("steps"):
            result.warnings.append(f"variant '{variant}' has different steps in the two runs")
        result.changes.extend(_variant_changes(old, new, variant, policy))
    for variant in old.plan["variants"]:
        if variant not in new.plan["variants"]:
            result.changes.append(Change(variant, "-", "all", NOT_COMPARABLE, note="missing from the new run"))
    _correct(result.changes, policy["alpha"])
    return result


def _correct(changes: list[Change], alpha: float) -> None:
    """Benjamini-Hochberg over every tested change: a comparison runs dozens of tests (variants ×
    metrics), and at alpha 0.01 each, identical runs would show about one regression in a hundred
    tests by chance alone (seen in A/A runs). A regression or improvement stands only when its
    adjusted p is below alpha; otherwise it is no significant change, and the note says why."""
    from scipy.stats import false_discovery_control

    tested = [c for c in changes if c.p_value is not None]
    if not tested:
        return
    adjusted = false_discovery_control([min(1.0, max(c.p_value, 0.0)) for c in tested], method="bh")
    for change, q in zip(tested, adjusted, strict=True):
        change.p_adjusted = float(q)
        if change.verdict in (REGRESSION, IMPROVEMENT) and q >= alpha:
            change.note = (f"{change.verdict} at p={change.p_value:.2g}, but not after the false-discovery correction "
                           f"over {len(tested)} tests (q={q:.2g} >= {alpha}); {change.note}")
            change.verdict = SAME
