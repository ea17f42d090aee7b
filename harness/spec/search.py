"""The recipe's `search:` section: pure, validated data (no optuna here).

A search space is an ordered list of *slots*, one step position each; a slot chooses one of its
step kinds (or `none`: the slot is skipped) and, for the chosen kind, samples that kind's
parameters — so parameters are conditional on the kind, as Optuna's define-by-run API samples
them. A parameter is a mapping with exactly one of `choices:`, `int: [low, high]` or
`float: [low, high]` (with `step:` / `log:`); any other value is fixed and passed to the step as
written. Each parameter's every choice and both ends of each range are validated by the step's own
config, at the parameter's `file:line`, before anything runs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from harness.spec.base import NAME_PATTERN, Strict

NONE = "none"
SAMPLERS = ("nsga2", "tpe", "random")
PARAM_KEYS = {"choices", "int", "float", "step", "log"}


class Param(Strict):
    """One searched parameter: categorical (`choices`) or a numeric range (`int` / `float`)."""

    choices: list[Any] | None = None
    int_: list[int] | None = Field(None, alias="int", min_length=2, max_length=2,
                                   description="[low, high], both included")
    float_: list[float] | None = Field(None, alias="float", min_length=2, max_length=2, description="[low, high]")
    step: float | None = Field(None, gt=0, description="grid spacing of a range")
    log: bool = False

    def problem(self) -> str | None:
        """Why this parameter is empty or contradictory, or None."""
        given = [k for k in ("choices", "int_", "float_") if getattr(self, k) is not None]
        if len(given) != 1:
            return "give exactly one of choices:, int: [low, high] or float: [low, high]"
        if self.choices is not None:
            return "choices: is empty" if not self.choices else None
        low, high = self.int_ or self.float_  # type: ignore[misc]
        if low > high:
            return f"the range [{low}, {high}] is empty: low is above high"
        if self.log and (low <= 0 or self.step is not None):
            return "log: true needs low > 0 and no step:"
        return None

    def edges(self) -> list[Any]:
        """The values the step's config must accept: every choice, or both ends of the range."""
        if self.choices is not None:
            return list(self.choices)
        low, high = self.int_ or self.float_  # type: ignore[misc]
        return [low, high] if low != high else [low]

    def size(self) -> float:
        """How many distinct values (inf for a continuous range)."""
        if self.choices is not None:
            return len(self.choices)
        low, high = self.int_ or self.float_  # type: ignore[misc]
        if self.int_ is not None:
            return (high - low) // int(self.step or 1) + 1
        return float("inf") if self.step is None else (high - low) // self.step + 1


def is_param(value: Any) -> bool:
    """A step field written as a search parameter (a mapping of only parameter keys, one a kind)."""
    return isinstance(value, dict) and bool(value) and set(value) <= PARAM_KEYS \
        and bool(set(value) & {"choices", "int", "float"})


class Slot(Strict):
    """One step position: the kinds it may take (`none` skips it), each with its fields."""

    slot: str = Field(pattern=NAME_PATTERN, description="names the position (and its parameters)")
    # `none:` (null) is allowed as written; the validator turns it into {} (the schema says so too)
    kinds: dict[str, dict[str, Any] | None] = Field(description="step kind (or 'none') → its fields: fixed values or "
                                                         "parameters ({choices: [...]}, {int: [lo, hi]}, "
                                                         "{float: [lo, hi], step: 0.1})")

    @field_validator("kinds", mode="before")
    @classmethod
    def _empty_fields(cls, kinds: Any) -> Any:
        return {k: (v or {}) for k, v in kinds.items()} if isinstance(kinds, dict) else kinds


class EarlyStop(Strict):
    """Score a seeded, stratified lite subset first; stop a trial that cannot meet the retention target."""

    items: int = Field(120, gt=1, description="lite subset size (drawn from the recipe's first accuracy suite)")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="one-sided confidence of the exact (Clopper-Pearson) "
                                                               "upper bound of the trial's accuracy")


class SearchSpec(Strict):
    """`harness search`: which objectives, over which space, with which sampler and budget."""

    sampler: Literal["nsga2", "tpe", "random"] = "nsga2"
    objectives: list[str] = Field(default_factory=lambda: ["accuracy", "ttft_ms", "size_mb"],
                                  description="objectives of the suite kinds (directions are theirs)")
    n_trials: int = Field(gt=0, description="trial budget (trials stopped early count)")
    timeout_s: float | None = Field(None, gt=0, description="stop asking for new trials after this long "
                                     "(seconds, from the start of this `harness search` call)")
    seed: int = 0
    population: int | None = Field(None, gt=1, description="NSGA-II population size (default: Optuna's 50); a "
                                   "generation needs that many *completed* trials — stopped or failed ones do not "
                                   "count, so with early stopping NSGA-II samples at random for longer")
    startup_trials: int | None = Field(None, gt=0, description="TPE: random trials before it models the space "
                                       "(Optuna's default 10); TPE also learns from stopped and infeasible trials")
    early_stop: EarlyStop | None = None
    space: list[Slot] = Field(description="the step positions, in pipeline order")
