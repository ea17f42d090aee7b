"""Run one unit of work in an isolated, fresh process with a time limit.

A crash (segfault, abort, OOM kill), a hang past the limit, or an exception inside the worker
comes back as a failed `Outcome` with its reason and traceback; the parent never dies with it.
The worker's stdout/stderr go to a log file next to its result.

Processes come from a *fork server* (`multiprocessing`'s "forkserver" start method): one server
process imports torch, transformers' FastVLM modelling and the harness once (`PRELOAD`, no model,
no tensor op, so no thread pool exists yet) and forks every worker from that state. Each worker
is still a fresh process — its own memory, its own thread pool, nothing measured before it — but
it starts in ~0.4 s instead of ~8 s of imports (measured here on 2 cores). The worker takes the
parent's environment as it is when the work is submitted (the server's is fixed at its start).
"""

from __future__ import annotations

import functools
import importlib
import json
import multiprocessing
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class WorkerFiles:
    """Where a worker's stdout/stderr and its JSON result go (named by the caller's folder owner)."""

    log: Path
    result: Path


@dataclass
class Outcome:
    ok: bool
    result: dict[str, Any] | None
    error: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    #: Where the worker ran when that is not this machine (an executor's node: host, node id).
    where: dict[str, str] | None = None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


#: What the fork server imports once; a module that fails to import is skipped (the worker then
#: imports it itself and reports the failure where it happens).
PRELOAD = ["torch", "numpy", "scipy.stats", "datasets", "safetensors.torch", "timm.models.fastvit", "transformers",
           "transformers.models.fast_vlm.modeling_fast_vlm", "transformers.models.llava.processing_llava",
           "transformers.models.clip.image_processing_clip", "harness.models.loading", "harness.build.variant",
           "harness.build.artifact", "harness.run.worker", "harness.suites._memprobe", "harness.run.preload"]
@functools.cache
def _context() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _entry(target: str, payload: Any, log_path: str, result_path: str, environ: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(environ)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    module_name, func_name = target.split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        result = func(payload)
        _write_json(Path(result_path), {"ok": True, "result": result})
    except BaseException as exc:  # noqa: BLE001 - everything is recorded for the report
        text = traceback.format_exc()
        print(text, file=sys.stderr)
        message = f"{type(exc).__name__}: {exc}".strip()
        _write_json(Path(result_path), {"ok": False, "error": message.splitlines()[0][:500], "traceback": text})
        sys.stderr.flush()
        os._exit(1)


def run_isolated(target: str, payload: Any, files: WorkerFiles, timeout_s: float,
                 environ: dict[str, str] | None = None) -> Outcome:
    """Call ``module:function(payload)`` in a fresh process; never raises for its failures.

    `payload` must pickle (a frozen dataclass or plain data); `environ` is added to this process's
    environment for the child (e.g. its share of the cores)."""
    files.log.parent.mkdir(parents=True, exist_ok=True)
    result_path = files.result
    result_path.unlink(missing_ok=True)
    process = _context().Process(target=_entry, args=(target, payload, str(files.log), str(result_path),
                                                      {**os.environ, **(environ or {})}))
    start = time.perf_counter()
    process.start()
    process.join(timeout_s)
    seconds = time.perf_counter() - start
    if process.is_alive():
        process.kill()
        process.join(10)
        return Outcome(False, None, f"timed out after {timeout_s:.0f} s (variant_timeout_s); the worker was killed",
                       seconds=seconds)
    if result_path.exists():
        data = json.loads(result_path.read_text())
        if data.get("ok"):
            return Outcome(True, data["result"], seconds=seconds)
        return Outcome(False, None, data.get("error"), data.get("traceback"), seconds)
    code = process.exitcode
    reason = f"worker died with exit code {code}"
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = " (killed: often out of memory)" if -code == signal.SIGKILL else ""
        reason = f"worker died from signal {name}{hint}"
    tail = files.log.read_text(errors="replace")[-4000:] if files.log.exists() else ""
    return Outcome(False, None, reason, tail or None, seconds)
