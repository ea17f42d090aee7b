"""The run folder's one owner: every file name in it, its format version, and how it is created,
opened, read and written. No other module spells a run-folder file name (a test checks it).

```
reports/<UTC time>-<recipe>-<hex>/
  run.json               the run's plan (RunPlan): variants, baseline, suites, runtime plan
  recipe.yaml            the recipe as given;  recipe.resolved.json: validated, grid expanded
  environment.json       versions, CPU, threads, git sha
  variants/<name>/       result.json (VariantResult), worker.log, measurement process folders
  results.json           the aggregated summary (RunSummary);  timings.json: wall seconds per stage
  report.html  gate.junit.xml  compare-<old run>.html
reports/history.sqlite   shared by every run of that output directory
```
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, RunDirError
from harness.isolation import WorkerFiles

#: Version of the run folder's layout and JSON shapes. It is stored under the key
#: "report_version", the name it had when it was introduced, so that older runs still read.
RUN_FORMAT_VERSION = 1
FORMAT_KEY = "report_version"

PLAN = "run.json"
RECIPE_COPY = "recipe.yaml"
RESOLVED_RECIPE = "recipe.resolved.json"
ENVIRONMENT = "environment.json"
VARIANTS = "variants"
VARIANT_RESULT = "result.json"
FAILED_RESULT = "result.failed-{n}.json"  # a failed result kept when --retry-failed runs the variant again
SUMMARY = "results.json"
TIMINGS = "timings.json"
REPORT = "report.html"
JUNIT = "gate.junit.xml"
WORKER_LOG = "worker.log"
WORKER_RESULT = "worker_result.json"
HISTORY = "history.sqlite"
SEARCH_STORAGE = "search.journal"  # Optuna's journal of a `harness search` (its trials, resumable)
SEARCH = "search.json"  # the search's trials, frontier and importances, as the report reads them
LITE = "lite"  # a search trial's lite-subset worker folder, inside its variant folder
HISTORY_ENV = "HARNESS_HISTORY_DB"


def history_in(output: Path) -> Path:
    """The history database of an output directory (`$HARNESS_HISTORY_DB` overrides it)."""
    env = os.environ.get(HISTORY_ENV)
    return Path(env) if env else output / HISTORY


def worker_files(folder: Path) -> WorkerFiles:
    """Where an isolated worker writing into `folder` keeps its log and its result."""
    return WorkerFiles(log=folder / WORKER_LOG, result=folder / WORKER_RESULT)


def measurement_files(variant_dir: Path, kind: str, suite: str, index: int) -> WorkerFiles:
    """The log and result of one fresh measurement process of a suite, in its own folder."""
    return worker_files(variant_dir / f"{kind}-{suite}-{index}")


def _write_json(path: Path, data: Any, indent: int) -> None:
    """Atomic: a reader never sees half a file (a run may be read while another process writes)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent, default=str))
    tmp.replace(path)


@dataclass(frozen=True)
class RunDir:
    """A run folder on disk."""

    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    # --- paths ----------------------------------------------------------------------------
    @property
    def report_file(self) -> Path:
        return self.path / REPORT

    @property
    def junit_file(self) -> Path:
        return self.path / JUNIT

    @property
    def summary_file(self) -> Path:
        return self.path / SUMMARY

    @property
    def history_file(self) -> Path:
        return history_in(self.path.parent)

    def compare_file(self, old_run_id: str) -> Path:
        return self.path / f"compare-{old_run_id}.html"

    def variant_dir(self, name: str) -> Path:
        return self.path / VARIANTS / name

    def lite_dir(self, name: str) -> Path:
        return self.variant_dir(name) / LITE

    @property
    def search_storage(self) -> Path:
        return self.path / SEARCH_STORAGE

    def is_search(self) -> bool:
        return self.search_storage.exists()

    # --- reading --------------------------------------------------------------------------
    def read_plan(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / PLAN).read_text())
        except json.JSONDecodeError:
            raise RunDirError(f"'{self.path / PLAN}' is corrupt; this run cannot be resumed or reported") from None

    def read_resolved_recipe(self) -> dict[str, Any]:
        return json.loads((self.path / RESOLVED_RECIPE).read_text())

    def read_resolved_spec(self) -> dict[str, Any]:
        """The resolved recipe's spec, {} for a run folder that has none."""
        path = self.path / RESOLVED_RECIPE
        return json.loads(path.read_text())["spec"] if path.exists() else {}

    def read_environment(self) -> dict[str, Any]:
        path = self.path / ENVIRONMENT
        return json.loads(path.read_text()) if path.exists() else {}

    def recipe_copy(self) -> Path:
        return self.path / RECIPE_COPY

    def recipe_text(self) -> str:
        path = self.recipe_copy()
        return path.read_text() if path.exists() else ""

    def has_result(self, name: str) -> bool:
        return (self.variant_dir(name) / VARIANT_RESULT).exists()

    def read_variant_result(self, name: str) -> dict[str, Any]:
        """A variant's result.json; `{"variant", "status": "pending"}` when it has not finished."""
        path = self.variant_dir(name) / VARIANT_RESULT
        return json.loads(path.read_text()) if path.exists() else {"variant": name, "status": "pending"}

    def read_variant_results(self, names: list[str]) -> dict[str, dict[str, Any]]:
        return {name: self.read_variant_result(name) for name in names}

    def read_search(self) -> dict[str, Any] | None:
        """The search record (`harness search` runs), None for a plain run."""
        path = self.path / SEARCH
        return json.loads(path.read_text()) if path.exists() else None

    def read_summary(self) -> dict[str, Any]:
        if not self.summary_file.exists():
            raise RunDirError(f"'{self.path}' has no {SUMMARY}; it is not a finished run "
                              f"(try `harness run --resume {self.path}`)")
        try:
            return json.loads(self.summary_file.read_text())
        except json.JSONDecodeError:
            raise RunDirError(f"'{self.summary_file}' is corrupt; re-create it with "
                              f"`harness report {self.path}`") from None

    # --- writing --------------------------------------------------------------------------
    def write_plan(self, plan: dict[str, Any]) -> None:
        (self.path / PLAN).write_text(json.dumps(plan, indent=2))

    def write_environment(self, environment: dict[str, Any]) -> None:
        (self.path / ENVIRONMENT).write_text(json.dumps(environment, indent=2))

    def write_resolved_recipe(self, resolved: dict[str, Any]) -> None:
        (self.path / RESOLVED_RECIPE).write_text(json.dumps(resolved, indent=2))

    def write_variant_result(self, name: str, record: dict[str, Any]) -> None:
        _write_json(self.variant_dir(name) / VARIANT_RESULT, record, indent=1)

    def update_suite_result(self, name: str, runtime: str, suite: str, data: dict[str, Any]) -> None:
        """Put one suite's result into a variant's result.json (the runner's measurement rounds)."""
        record = self.read_variant_result(name)
        record["measurements"][runtime]["suites"][suite] = data
        self.write_variant_result(name, record)

    def write_timings(self, timings: dict[str, float]) -> None:
        """Wall seconds per stage of the run (build and worker suites, measurement rounds, finish)."""
        _write_json(self.path / TIMINGS, timings, indent=1)

    def read_timings(self) -> dict[str, float]:
        path = self.path / TIMINGS
        return json.loads(path.read_text()) if path.exists() else {}

    def keep_failed_result(self, name: str) -> Path:
        """Move a failed variant's result aside (`result.failed-<n>.json`) so it runs again on resume."""
        folder = self.variant_dir(name)
        index = 1 + sum(1 for _ in folder.glob(FAILED_RESULT.format(n="*")))
        target = folder / FAILED_RESULT.format(n=index)
        (folder / VARIANT_RESULT).replace(target)
        return target

    def write_search(self, record: dict[str, Any]) -> None:
        _write_json(self.path / SEARCH, record, indent=1)

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.summary_file.write_text(json.dumps(summary, indent=1, default=str))


def create(output: Path, recipe_name: str) -> RunDir:
    """A new, empty run folder `<output>/<UTC time>-<recipe>-<hex>`."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"output '{output}' is a file; give a directory for run output")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = output / f"{stamp}-{recipe_name}-{secrets.token_hex(2)}"
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(f"cannot create run directory under '{output}': {exc.strerror}") from None
    return RunDir(path)


def open_run(path: Path) -> RunDir:
    """An existing run folder; a one-line error when `path` is not one."""
    if not path.is_dir() or not (path / PLAN).exists():
        raise RunDirError(f"'{path}' is not a run directory (no {PLAN}); give a folder under reports/")
    return RunDir(path)


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / PLAN).exists()
