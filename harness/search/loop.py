"""The trial loop: batches of `--jobs` trials until the budget or the timeout is spent.

A trial that was still running when a search was killed is found on resume (Optuna state
RUNNING): its half-made variant is taken out of the plan (its folder kept, renamed), the trial is
told failed and listed as interrupted (it does not count against the budget), and its parameters
are queued so the next trial measures the same point. Finished trials are never redone.
"""

from __future__ import annotations

import time
from typing import Any

from harness.search.trials import Search, ask, run_batch, stop_early


def recover_interrupted(search: Search) -> None:
    """Fail, unplan and re-queue every trial a killed search left running."""
    import optuna

    running = [t for t in search.study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    if not running:
        return
    resolved = search.run.read_resolved_recipe()
    for trial in running:
        name = trial.user_attrs.get("variant")
        if name in search.plan["variants"]:
            search.plan["variants"].remove(name)
            search.plan["plan"] = [p for p in search.plan["plan"] if p["name"] != name]
            resolved["variants"] = [v for v in resolved["variants"] if v["name"] != name]
            search.recipe.variants[:] = [v for v in search.recipe.variants if v.name != name]
        folder = search.run.variant_dir(name) if name else None
        if folder is not None and folder.exists():
            folder.rename(folder.with_name(f"{folder.name}.interrupted"))
        search.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        search.plan["search"]["interrupted"].append(trial.number)
        search.study.enqueue_trial(trial.params)
    search.run.write_plan(search.plan)
    search.run.write_resolved_recipe(resolved)


#: A sampler that keeps proposing measured points is stopped after this many repeats per budget trial.
MAX_REPEATS_PER_TRIAL = 3


def counted(search: Search) -> int:
    """Trials that count against the budget: every finished one but the interrupted and the repeats
    of a point measured before."""
    import optuna

    interrupted = set(search.plan["search"]["interrupted"])
    return sum(1 for t in search.study.get_trials(deepcopy=False)
               if t.state != optuna.trial.TrialState.RUNNING and t.number not in interrupted
               and "repeat_of" not in t.user_attrs)


def _repeats(search: Search) -> int:
    return sum(1 for t in search.study.get_trials(deepcopy=False) if "repeat_of" in t.user_attrs)


def run_trials(search: Search, budget: int, began: float) -> None:
    """Ask, stop early, run and tell, a batch at a time."""
    recover_interrupted(search)
    search.plan["search"]["budget"] = budget
    timeout = search.spec.timeout_s
    search.bar.stage(f"search: {budget} trials ({counted(search)} done earlier)", budget, "trials")
    while (left := budget - counted(search)) > 0:
        stopped = (f"timeout: {timeout:g} s spent" if timeout is not None and time.perf_counter() - began > timeout
                   else "the sampler proposed only points measured before" if
                   _repeats(search) >= MAX_REPEATS_PER_TRIAL * budget else None)
        if stopped:
            search.plan["search"]["stopped"] = f"{stopped}, with {left} trial(s) of the budget left"
            search.run.write_plan(search.plan)
            return
        batch: list[Any] = [a for a in (ask(search) for _ in range(min(left, search.executor.options.jobs))) if a]
        batch = stop_early(search, batch) if batch else batch
        if batch:
            run_batch(search, batch)
