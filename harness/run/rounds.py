"""The measurement rounds: after every variant is built, the deferred suites (latency, memory)
measure each variant × runtime in fresh processes, one per round, the rounds interleaved across
variants in a shuffled, seeded order — the way asv interleaves rounds and pyperf spreads work over
worker processes — so drift of the machine (another job starting, thermal state) hits every
variant alike and the paired ratio to the baseline, round by round, cancels it.

A process whose numbers are far from the other processes of the same variant (`SuiteKind.outliers`)
is excluded and measured again, within a budget of extra processes; every process, its round,
its position in the round and whether it was excluded are kept in result.json.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.registries import SUITE_KINDS
from harness.results import rundir
from harness.results.baselines import baseline_of
from harness.run.worker import PENDING


@dataclass
class Job:
    """One deferred suite of one variant on one runtime, and what its processes returned."""

    variant: str
    runtime: str
    suite: dict[str, Any]
    artifact: str
    folder: Path
    kind: Any
    config: Any
    processes: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None
    #: The recipe's `runtime_options` for the runtime (run.json), for a runtime that measures itself.
    options: dict[str, Any] | None = None

    @property
    def rounds(self) -> int:
        return self.kind.rounds(self.config)


def pending_jobs(run: rundir.RunDir, plan: dict[str, Any]) -> list[Job]:
    """Every deferred suite still pending in the run's variant results."""
    jobs = []
    definitions = {s["name"]: s for s in [*plan["suites"], *plan.get("added_suites", [])]}
    for name in plan["variants"]:
        result = run.read_variant_result(name)
        for runtime, measured in result.get("measurements", {}).items():
            for suite, data in measured.get("suites", {}).items():
                if data.get("status") == PENDING:
                    kind_cls = SUITE_KINDS.get(data["kind"])
                    jobs.append(Job(name, runtime, definitions[suite], result["artifact"], run.variant_dir(name),
                                    kind_cls(), kind_cls.Config.model_validate(definitions[suite]),
                                    options=(plan.get("runtime_options") or {}).get(runtime)))
    return jobs


def process_job(job: Job, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The process that measures `job`: the runtime's own when it declares one for this kind (a
    device runtime times graphs on the device instead of loading and generating here), else the kind's."""
    from harness.run.plan import make_runtime

    runtime = make_runtime(job.runtime, job.options)
    own = runtime.process_job(job.suite["kind"], job.config, data) if hasattr(runtime, "process_job") else None
    return own or job.kind.process_job(job.config, data)


def _measure(job: Job, round_label: int | str, position: int, recipe_dir: Path | None) -> None:
    """One fresh process of `job`, kept with its round and position; on failure the job's failure
    is set instead."""
    from harness.isolation import run_isolated

    index = len(job.processes)
    threads = int(os.environ.get("HARNESS_THREADS", "0")) or None
    target, payload = process_job(job, {"runtime": job.runtime, "artifact": job.artifact,
                                        "recipe_dir": str(recipe_dir) if recipe_dir else None, "threads": threads})
    timeout = getattr(job.config, "process_timeout_s", None) or getattr(job.config, "timeout_s", 600)
    files = rundir.measurement_files(job.folder, job.suite["kind"], job.suite["name"], index)
    outcome = run_isolated(target, payload, files, timeout)
    if not outcome.ok:
        job.failure = f"suite '{job.suite['name']}': measurement process {index} failed: {outcome.error}"
        return
    job.processes.append({**outcome.result, "round": round_label, "position": position})


def _round(jobs: list[Job], round_index: int, seed: int, recipe_dir: Path | None,
           tick: Callable[[str], None], prefix: str = "") -> None:
    """One process for every job that has this round, in a shuffled order."""
    order = [j for j in jobs if round_index < j.rounds and j.failure is None]
    random.Random(f"{seed}:{prefix}{round_index}").shuffle(order)
    for position, job in enumerate(order):
        _measure(job, f"{prefix}{round_index}" if prefix else round_index, position, recipe_dir)
        tick(f"{job.variant}/{job.suite['name']} round {round_index + 1}")


def _flag(jobs: list[Job], budget: dict[int, int]) -> list[Job]:
    """Mark each job's outlier processes excluded; the jobs to measure again (one entry per process),
    within what is left of each job's budget."""
    again = []
    for job in jobs:
        flagged = job.kind.outliers(job.config, job.processes) if job.failure is None else []
        for i in flagged:
            job.processes[i] = {**job.processes[i], "excluded": True,
                                "outlier": "far from the other processes of this variant (robust z-score)"}
        take = min(len(flagged), budget[id(job)])
        again += [job] * take
        budget[id(job)] -= take
    return again


def _partners(again: list[Job], jobs: list[Job], plan: dict[str, Any]) -> list[Job]:
    """The baseline variant's job beside each re-measured one (same runtime and suite; its own model's
    baseline in a cross-model run), once: measured in the same extra round, the re-measured process
    still has a partner for its paired ratio."""
    out: list[Job] = []
    for job in again:
        baseline = baseline_of(plan, job.variant)
        partner = next((j for j in jobs if j.variant == baseline and j.runtime == job.runtime
                        and j.suite["name"] == job.suite["name"] and j.failure is None), None)
        if partner is not None and partner not in again and partner not in out:
            out.append(partner)
    return out


def _remeasure(jobs: list[Job], seed: int, recipe_dir: Path | None, tick: Callable[[str], None],
               plan: dict[str, Any] | None = None, prefix: str = "") -> None:
    """Exclude each job's outlier processes and measure that many again in extra shuffled rounds
    (with the baseline variant beside them), within a budget of half its rounds (at least one)."""
    budget = {id(j): max(1, j.rounds // 2) for j in jobs}
    for attempt in range(max(budget.values(), default=0)):
        again = _flag(jobs, budget)
        if not again:
            return
        again += _partners(again, jobs, plan or {})
        random.Random(f"{seed}:{prefix}again:{attempt}").shuffle(again)
        for position, job in enumerate(again):
            _measure(job, f"{prefix}again-{attempt + 1}", position, recipe_dir)
            tick(f"{job.variant}/{job.suite['name']} re-measured")
    _flag(jobs, {id(j): 0 for j in jobs})  # the last extra round's outliers are excluded too


def measure_rounds(run: rundir.RunDir, plan: dict[str, Any], seed: int, recipe_dir: Path | None,
                   tick: Callable[[str], None] = lambda label: None,
                   begin: Callable[[int], None] = lambda planned: None, prefix: str = "") -> int:
    """Carry out every pending deferred suite; `begin` hears how many processes the rounds will
    start (when there are any). Returns how many processes ran. `prefix` labels the rounds of a
    later batch (a search's trials: "t4-0", ...), so a round is never paired with another batch's
    round of the same number (they ran minutes apart, so their ratio would not cancel drift)."""
    jobs = pending_jobs(run, plan)
    planned = sum(j.rounds for j in jobs)
    if planned:
        begin(planned)
    for round_index in range(max((j.rounds for j in jobs), default=0)):
        _round(jobs, round_index, seed, recipe_dir, tick, prefix)
    _remeasure(jobs, seed, recipe_dir, tick, plan, prefix)
    for job in jobs:
        if job.failure is not None or not any(not p.get("excluded") for p in job.processes):
            data = {"status": "error", "kind": job.suite["kind"], "error": job.failure or "every process was excluded"}
        else:
            data = {"status": "ok", "kind": job.suite["kind"], **job.kind.merge(job.config, job.processes)}
        run.update_suite_result(job.variant, job.runtime, job.suite["name"], data)
    return sum(len(j.processes) for j in jobs)
