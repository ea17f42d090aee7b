"""The suite-kind contract: how a kind measures, and how its results reach `results.json`, the
targets, `harness compare`, the history database, the gate and the report.

A kind is one module with a `SuiteKind` subclass registered by `@SUITE_KINDS.register(name)`.
`aggregate`, `compare`, `history` and the report loop over the registry and call these hooks;
none of them names a kind. The defaults make a new kind useful with `Config` and `run` alone:
its numeric results appear under the runtime summary's `suites` section, in the history (and so
in `harness export`), in the report's section for the kind, and `harness compare` lists them as
not comparable until the kind says how to test a change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.spec.suite_files import SuiteConfig

if TYPE_CHECKING:
    from harness.results.compare import Change
    from harness.results.gate import Check
    from harness.results.pareto import Objective
    from harness.suites._context import SuiteContext

#: (metric name, value, [low, high] or None): one row of the history database.
HistoryRow = tuple[str, Any, Any]
DEFAULT_SECTION = "suites"
#: Fields the worker adds to every suite result; not part of a kind's numbers.
BOOKKEEPING = ("status", "kind", "wall_seconds", "error")


@dataclass(frozen=True)
class TargetRule:
    """How a kind's headline number is judged against one recipe target."""

    upper: bool  # True: the value must stay <= the limit; False: >= the limit
    unit: str
    missing: str  # why the target is "not measured" when no suite of this kind ran


@dataclass(frozen=True)
class TargetValue:
    value: float | None
    ci: list[float] | None = None
    why: str = ""
    #: Why the number is not to be trusted on its own (e.g. its processes disagree).
    noisy: str = ""
    #: The lowest and highest replicate (e.g. each process's median): a noisy number still decides a
    #: target when every replicate lies on the same side of the limit.
    spread: list[float] | None = None


def scalars(data: dict[str, Any]) -> dict[str, Any]:
    """The top-level numbers and strings of a result (nested data, lists and bookkeeping left out)."""
    return {k: v for k, v in data.items() if k not in BOOKKEEPING and isinstance(v, (int, float, str))}


class SuiteKind:
    """Base class of every suite kind; override what differs from the defaults."""

    Config: ClassVar[type[SuiteConfig]] = SuiteConfig
    #: Reads files only: measured even where the runtime cannot load a session (size).
    needs_session: ClassVar[bool] = True
    #: Per-item scores in one shape (metric, score, ci, n, items): paired retention against the
    #: baseline, the summary's `accuracy` section, the min_retention target.
    scored: ClassVar[bool] = False
    #: Where a runtime summary keeps this kind's entries, by suite name (None: headline only).
    section: ClassVar[str | None] = DEFAULT_SECTION
    #: Where the runtime summary keeps the first suite of this kind's entry (None: none).
    headline: ClassVar[str | None] = None
    #: Recipe targets this kind measures (on its headline entry).
    targets: ClassVar[dict[str, TargetRule]] = {}
    #: Pareto objectives this kind's headline contributes (read by `objective_values`).
    objectives: ClassVar[tuple[Objective, ...]] = ()
    #: Jinja template of its report section (macros `section`, optional `overview_headers` /
    #: `overview_cells` for the variants table) and whether the section is per runtime or per run.
    report_template: ClassVar[str] = "suites/default.html.j2"
    report_scope: ClassVar[str] = "runtime"
    #: Measured by the runner after every variant is built, in rounds: each round starts one fresh
    #: process per variant × runtime, in a shuffled (seeded) order, so machine drift hits every
    #: variant alike (latency, memory). The hooks below say what a process runs and how to merge.
    deferred: ClassVar[bool] = False

    def run(self, config: Any, ctx: SuiteContext) -> dict[str, Any]:
        raise NotImplementedError

    # --- before the run -------------------------------------------------------------------
    def preflight(self, config: Any, recipe_dir: Path | None) -> list[str]:
        """What would stop this suite, found in the parent process before any worker starts
        (fast, no model): by default, that its `dataset` is available offline and has the columns
        `required_columns` names."""
        from harness.data.sources import probe
        from harness.errors import HarnessError

        dataset = getattr(config, "dataset", None)
        if dataset is None:
            return []
        try:
            columns = probe(dataset, recipe_dir)
        except HarnessError as exc:
            return [f"suite '{config.name}': {exc}"]
        if columns is None:  # present, columns unknown until read
            return []
        return [f"suite '{config.name}': dataset {dataset.label()} has no column '{column}' (columns: "
                f"{', '.join(columns)})" for column in self.required_columns(config) if column not in columns]

    def required_columns(self, config: Any) -> list[str]:
        """The dataset columns the suite reads."""
        return []

    # --- deferred kinds: measured in interleaved rounds ------------------------------------
    def rounds(self, config: Any) -> int:
        """How many fresh processes (one per round) measure one variant × runtime."""
        return 1

    def process_job(self, config: Any, job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(`module:function`, payload) one measuring process runs; `job` has runtime, artifact,
        recipe_dir and threads."""
        raise NotImplementedError(f"{type(self).__name__} is deferred but defines no process_job")

    def outliers(self, config: Any, processes: list[dict[str, Any]]) -> list[int]:
        """Indices of processes whose numbers are far from the others' (excluded and re-measured)."""
        return []

    def merge(self, config: Any, processes: list[dict[str, Any]]) -> dict[str, Any]:
        """The suite result from its processes (each: the process result plus `round`, `position`
        and `excluded`)."""
        raise NotImplementedError(f"{type(self).__name__} is deferred but defines no merge")

    # --- results.json ---------------------------------------------------------------------
    def summarize(self, data: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
        """The summary entry of one ok result; `base` is the baseline variant's result of the same
        suite on the same runtime (None when it has none)."""
        return scalars(data)

    def unmeasured(self, status: str, error: str | None) -> dict[str, Any] | None:
        """The headline entry when the suite failed or was unavailable (None: nothing in its place)."""
        return None

    def verdict(self, headline: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
        """A recipe-policy verdict on the headline entry (e.g. parity thresholds), stored in it."""
        return None

    def target_value(self, summary: dict[str, Any], target: str) -> TargetValue:
        """The value (and noise interval) a target is judged on, from a runtime summary."""
        entry = summary.get(self.headline or "")
        if entry is None:
            return TargetValue(None, why=self.targets[target].missing)
        raise NotImplementedError(f"{type(self).__name__} declares target {target} but no target_value")

    def objective_values(self, summary: dict[str, Any]) -> dict[str, tuple[float, list[float] | None]]:
        """Objective name → (value, interval) from a runtime summary, for the Pareto standing."""
        return {}

    # --- compare, history, gate -----------------------------------------------------------
    def compare(self, name: str, old: dict[str, Any], new: dict[str, Any], variant: str, runtime: str,
                policy: dict[str, Any]) -> list[Change]:
        """The changes between two runs' ok results of one suite (`harness compare`, `gate --baseline`)."""
        from harness.results.compare import NOT_COMPARABLE, Change

        kind = new.get("kind")
        numbers = {k: (old.get(k), v) for k, v in scalars(new).items() if isinstance(v, (int, float))}
        shown = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in list(numbers.items())[:4])
        note = f"suite kind '{kind}' has no comparison" + (f" ({shown})" if shown else "")
        return [Change(variant, runtime, name, NOT_COMPARABLE, note=note)]

    def history_rows(self, name: str, entry: dict[str, Any]) -> list[HistoryRow]:
        """Rows for one entry of the kind's section (metric names are prefixed with the suite)."""
        return [(f"{name}.{k}", v, None) for k, v in entry.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)]

    def export_rows(self, name: str, entry: dict[str, Any]) -> list[HistoryRow]:
        """Rows `harness export` adds to the history rows for one section entry (already prefixed)."""
        return []

    def headline_rows(self, entry: dict[str, Any]) -> list[HistoryRow]:
        """Rows for the kind's headline entry (unprefixed metric names)."""
        return []

    def gate_checks(self, variant: str, runtime: str, headline: dict[str, Any]) -> list[Check]:
        """Checks of the headline entry beyond the recipe targets (e.g. parity thresholds)."""
        return []

    # --- report -----------------------------------------------------------------------------
    def report_context(self, rows: list[dict[str, Any]], plan: dict[str, Any]) -> dict[str, Any]:
        """Extra data its report template needs. `rows`: one dict per ok variant × runtime shown, with
        `variant` (its summary), `runtime`, `summary` (that runtime's) and `result` (its result.json);
        `plan`: the run's run.json."""
        return {}
