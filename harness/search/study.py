"""The Optuna study of a search: its sampler, its storage in the run folder, and what a trial
reads back from a finished run summary (objective values, constraint values).

The study lives in Optuna's journal storage (`search.journal` in the run folder: an append-only
file, safe to read after a kill), so `harness search --resume RUN_DIR` continues it. The recipe's
targets are the constraints: each is `(value - limit) / limit` for an upper limit and
`(limit - value) / limit` for a lower one, feasible at <= 0 (Optuna's convention); a target that is
undecided or not measured is infeasible, so a trial is only called feasible on decided numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.spec.search import SearchSpec

STUDY = "search"
#: Violation recorded for a target with no decided value: infeasible, without a made-up magnitude.
UNDECIDED_VIOLATION = 1.0


def sampler(spec: SearchSpec) -> Any:
    """Optuna's multi-objective sampler the recipe names (constraints are read from each trial)."""
    import optuna

    if spec.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=spec.seed, **({"population_size": spec.population}
                                                                  if spec.population else {}))
    if spec.sampler == "tpe":
        import warnings

        with warnings.catch_warnings():  # `group` (conditional spaces) is experimental in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=spec.seed, multivariate=True, group=True,
                                              **({"n_startup_trials": spec.startup_trials}
                                                 if spec.startup_trials else {}))
    return optuna.samplers.RandomSampler(seed=spec.seed)


def open_study(storage_file: Path, spec: SearchSpec, directions: list[str], create: bool) -> Any:
    """The study in the run folder's journal: created for a new search, loaded on resume."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(storage_file)))
    if create:
        return optuna.create_study(storage=storage, study_name=STUDY, directions=directions, sampler=sampler(spec))
    return optuna.load_study(storage=storage, study_name=STUDY, sampler=sampler(spec))


def constraint_values(targets: dict[str, Any]) -> dict[str, float]:
    """Per recipe target, its violation (<= 0 feasible) from a runtime summary's target verdicts."""
    from harness.results.kinds import measuring

    out = {}
    for name, verdict in targets.items():
        value, limit = verdict.get("value"), verdict.get("limit")
        if value is None or limit in (None, 0) or verdict.get("status") not in ("pass", "fail"):
            out[name] = UNDECIDED_VIOLATION
            continue
        upper = measuring(name).targets[name].upper  # decided (pass/fail): some kind measured it
        out[name] = (value - limit) / abs(limit) if upper else (limit - value) / abs(limit)
    return out


def feasible(constraints: dict[str, float]) -> bool:
    return all(c <= 0 for c in constraints.values())


def trial_seconds(trial: Any) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()
