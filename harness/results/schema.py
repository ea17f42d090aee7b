"""The declared shapes of the run folder's JSON files, versioned by `rundir.RUN_FORMAT_VERSION`.

- `RunPlan` — `run.json`: what the run is (variants, baseline, suite definitions, and per variant
  which runtimes measure it with which suites, or why not).
- `VariantResult` — `variants/<name>/result.json`: one variant's build and its raw measurements,
  per runtime and suite (a suite kind adds its own fields to `SuiteResult`).
- `RunSummary` — `results.json`: the aggregate the report, gate, compare, history and export read.
  A runtime's summary holds the scored suites under `accuracy`, failures under `errors` /
  `unavailable`, target verdicts under `targets`, and each suite kind's own section and headline
  (e.g. `latency_by_suite` and `latency`), as that kind declares (`harness.suites._kind`).

`validate(shape, data)` checks a file against its shape (pydantic), used by the tests on real runs.
"""

from __future__ import annotations

from typing import Any, Literal

from typing_extensions import NotRequired, TypedDict

SuiteStatus = Literal["ok", "error", "unavailable", "not applicable"]


class PlannedRuntime(TypedDict):
    """One variant × runtime of the plan: measured with `suites`, or not applicable for `reason`."""

    runtime: str
    reason: str | None
    suites: list[str]
    #: Suites of kinds the runtime does not measure (its `suite_kinds`), with why.
    not_applicable: NotRequired[dict[str, str]]


class PlannedVariant(TypedDict):
    name: str
    formats: list[str]
    runtimes: list[PlannedRuntime]
    #: The model family of its base (None: it did not resolve); absent in runs recorded before families.
    family: NotRequired[str | None]
    #: Cross-model runs: the `models:` entry it is built from and its own baseline variant.
    model: NotRequired[str]
    baseline: NotRequired[str]


class RunPlan(TypedDict):
    run_id: str
    recipe: str
    recipe_path: str
    started: float
    variants: list[str]
    #: The baseline (a cross-model run: the first model's; `baselines` has every variant's own).
    baseline: str
    baselines: NotRequired[dict[str, str]]
    #: Definitions of every suite the plan names (the recipe's and the automatic parity suite).
    suites: list[dict[str, Any]]
    report_version: int
    #: Absent in runs recorded before the plan was stored (their plan is recomputed on resume).
    plan: NotRequired[list[PlannedVariant]]
    #: The recipe's `runtime_options` (each validated by its runtime's Config), for the measuring processes.
    runtime_options: NotRequired[dict[str, dict[str, Any]]]
    #: The preflight's notes: what will be recorded not measured (e.g. no phone connected).
    notices: NotRequired[list[str]]


class SuiteResult(TypedDict):
    """A suite's raw result on one variant × runtime; the kind's own fields come with status ok."""

    status: SuiteStatus
    kind: str
    wall_seconds: NotRequired[float]
    error: NotRequired[str]
    reason: NotRequired[str]


class RuntimeMeasurement(TypedDict):
    suites: dict[str, SuiteResult]
    info: NotRequired[dict[str, Any]]
    status: NotRequired[Literal["not applicable"]]
    reason: NotRequired[str]


class BuildInfo(TypedDict):
    cached: bool
    key: str
    notes: list[str]
    build_seconds: float | None
    training: list[dict[str, Any]]
    #: Why the variant was not built here (a random model too large for this machine): size estimated only.
    size_only: NotRequired[str]


class VariantResult(TypedDict):
    variant: str
    steps: list[dict[str, Any]]
    gate: bool
    status: Literal["ok", "failed", "pending"]
    seconds: NotRequired[float]
    artifact: NotRequired[str]
    build: NotRequired[BuildInfo]
    measurements: NotRequired[dict[str, RuntimeMeasurement]]
    error: NotRequired[str | None]
    traceback: NotRequired[str | None]


class TargetVerdict(TypedDict):
    status: Literal["pass", "fail", "undecided", "not measured", "not applicable"]
    limit: float
    value: NotRequired[float]
    ci: NotRequired[list[float] | None]
    within_noise: NotRequired[bool]
    unit: NotRequired[str]
    why: NotRequired[str]


class RuntimeSummary(TypedDict):
    #: Scored suites (accuracy, lm-eval, plugins with `scored = True`) by suite name.
    accuracy: dict[str, dict[str, Any]]
    errors: dict[str, str | None]
    unavailable: NotRequired[dict[str, str | None]]
    not_applicable: NotRequired[dict[str, str | None]]
    targets: dict[str, TargetVerdict]


class VariantSummary(TypedDict):
    name: str
    status: str
    gate: bool
    steps: list[dict[str, Any]]
    error: str | None
    traceback: str | None
    notes: list[str]
    key: str | None
    training: list[dict[str, Any]]
    runtimes: dict[str, RuntimeSummary]
    not_applicable: NotRequired[dict[str, str | None]]
    #: As the plan recorded them: the base's model family, and (cross-model runs) the model.
    family: NotRequired[str | None]
    model: NotRequired[str]


class RunSummary(TypedDict):
    run_id: str
    recipe: str
    baseline: str
    #: Cross-model runs: each variant's own baseline (its model's).
    baselines: NotRequired[dict[str, str]]
    targets: dict[str, float | None]
    variants: list[VariantSummary]
    report_version: int
    warnings: list[str]


def validate(shape: type, data: Any) -> Any:
    """`data` checked against a shape above (raises pydantic's ValidationError with every problem)."""
    from pydantic import TypeAdapter

    return TypeAdapter(shape).validate_python(data)
