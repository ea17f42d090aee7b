"""Read the output of LiteRT/TFLite's `benchmark_model` (the command-line tool, or the Android
benchmark app's logcat) into numbers — for `harness device import` (a log measured elsewhere) and
the `android-litert` runtime (a run it started over adb), so both read the tool the same way.

`benchmark_model` loads one `.tflite` graph, feeds it random inputs and times `Invoke()`:
initialisation, the first inference, the warm-up runs and the steady-state runs (the `count=`
line: count, first, curr, min, max, avg, std, and p5/median/p95 in newer versions), all in
microseconds; then, approximately, the memory footprint of the tool (`init=` / `overall=` deltas
from its start, and the peak sampled by `--report_peak_memory_footprint`), in MB of 2^20 bytes.
It knows nothing of images, tokenizers or a decode loop: its numbers are one graph's inference.

Lines may carry a prefix (`INFO: `, a logcat `05-30 15:16:44.857  3380  3380 I tflite  : `);
lines this module does not know are ignored. The parameters are read from the tool's echo
(`Num threads: [4]`, `Use gpu: [1]`) and, where it did not echo them, from the command line
quoted with the output (`--num_threads=4`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import DataError

NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
#: Logcat (`MM-DD hh:mm:ss.mmm  pid  tid L tag  : `) and log-level (`INFO: `) prefixes.
_LOGCAT = re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[\w.]+\s*:\s?")
_LEVEL = re.compile(r"^(?:INFO|VERBOSE|WARNING|ERROR|DEBUG): ")
_TIMINGS = re.compile(rf"^Inference timings in us: Init: ({NUMBER}), First inference: ({NUMBER}), "
                      rf"Warmup \(avg\): ({NUMBER}), Inference \(avg\): ({NUMBER})")
_COUNT = re.compile(r"^count=(\d+)((?:\s+\w+=" + NUMBER + r")*)\s*$")
_DELTA = re.compile(rf"^(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
                    rf"init=({NUMBER}) overall=({NUMBER})")
_PEAK = re.compile(rf"^Overall peak memory footprint \(MB\) via periodic monitoring: ({NUMBER})")
_ECHO = re.compile(r"^([#\w][\w ()#-]*?)\s*: \[(.*)\]\s*$")
_APPLIED = re.compile(r"^Explicitly applied (\w[\w ]*?) delegate, and the model graph will be (completely|partially) "
                      r"executed by the delegate")
_NOT_APPLIED = re.compile(r"^Though (\w[\w ]*?) delegate is explicitly applied, the model graph will not be executed")
_SIZE = re.compile(rf"^The input model file size \(MB\): ({NUMBER})")
_LOADED = re.compile(r"^Loaded model (\S+)")
_FLAG = re.compile(r"--(\w+)=(\S+)")
#: Delegates by their flag / echo name (`--use_gpu`, `Use gpu: [1]`).
DELEGATES = {"xnnpack": "XNNPACK", "gpu": "GPU", "nnapi": "NNAPI", "hexagon": "Hexagon", "coreml": "CoreML",
             "external_delegate": "external"}


@dataclass(frozen=True)
class Steady:
    """The steady-state `count=` line: the timed runs after warm-up (µs)."""

    count: int
    avg_us: float
    std_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    first_us: float | None = None
    median_us: float | None = None
    p5_us: float | None = None
    p95_us: float | None = None


@dataclass(frozen=True)
class BenchmarkModelRun:
    """One `benchmark_model` run: what was timed, how, and the numbers (µs; memory in MiB)."""

    init_us: float
    first_us: float
    warmup_avg_us: float
    inference_avg_us: float
    steady: Steady | None = None
    warmup_count: int | None = None
    model: str | None = None
    signature: str | None = None
    threads: int | None = None
    #: Delegate flags as asked for (`--use_gpu=true`, `Use gpu: [1]`), by delegate name.
    delegates: dict[str, bool] = field(default_factory=dict)
    #: What the tool said each delegate took: "completely", "partially (44 delegate kernels)" or "not executed".
    applied: dict[str, str] = field(default_factory=dict)
    model_size_mb: float | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    peak_memory_mb: float | None = None

    @property
    def graph(self) -> str | None:
        """The graph's file name (and signature), e.g. `vision.tflite:encode`."""
        if not self.model:
            return None
        name = self.model.replace("\\", "/").rsplit("/", 1)[-1]
        return f"{name}:{self.signature}" if self.signature else name

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "graph": self.graph}


def strip_prefix(line: str) -> str:
    """The message of a log line, without logcat or log-level prefixes and surrounding blanks."""
    text = _LOGCAT.sub("", line.strip())
    return _LEVEL.sub("", text).strip()


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _joined(text: str) -> list[str]:
    """Lines, with shell continuations (`\\` at the end) joined onto one (a quoted command line)."""
    return text.replace("\\\r\n", " ").replace("\\\n", " ").splitlines()


def _steady(fields: str, count: int) -> Steady | None:
    """A `count=` line with `avg=` (the warm-up line of a single run has only `curr=`)."""
    values = {k: float(v) for k, v in re.findall(rf"(\w+)=({NUMBER})", fields)}
    if "avg" not in values:
        return None
    return Steady(count, values["avg"], values.get("std"), values.get("min"), values.get("max"),
                  values.get("first"), values.get("median"), values.get("p5"), values.get("p95"))


def _flags(line: str) -> dict[str, str]:
    """`--name=value` of a quoted benchmark_model command line (or the benchmark app's `args:`)."""
    if "benchmark_model" not in line and "benchmark with args" not in line:
        return {}
    return dict(_FLAG.findall(line))


@dataclass
class _Scan:
    """What the lines said, before it is checked and assembled."""

    timings: list[tuple[float, ...]] = field(default_factory=list)
    counts: list[tuple[int, Steady | None]] = field(default_factory=list)
    echo: dict[str, str] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)
    applied: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, float] = field(default_factory=dict)
    loaded: str | None = None
    last: str = ""


def _scan_line(scan: _Scan, line: str) -> None:
    """One message line into `scan` (counts only before the timings line: later ones are op profiles)."""
    if match := _TIMINGS.match(line):
        scan.timings.append(tuple(float(x) for x in match.groups()))
    elif (match := _COUNT.match(line)) and not scan.timings:
        scan.counts.append((int(match[1]), _steady(match[2], int(match[1]))))
    elif match := _DELTA.match(line):
        scan.numbers.update(memory_init_mb=float(match[1]), memory_overall_mb=float(match[2]))
    elif match := _PEAK.match(line):
        scan.numbers["peak_memory_mb"] = float(match[1])
    elif match := _SIZE.match(line):
        scan.numbers["model_size_mb"] = float(match[1])
    elif match := _APPLIED.match(line):
        kernels = re.search(r"w/ (\d+) delegate kernels", line)
        scan.applied[match[1]] = match[2] + (f" ({kernels[1]} delegate kernels)" if kernels else "")
    elif match := _NOT_APPLIED.match(line):
        scan.applied[match[1]] = "not executed"
    elif match := _LOADED.match(line):
        scan.loaded = match[1]
    elif match := _ECHO.match(line):
        scan.echo[match[1].strip().lower()] = match[2].strip()


def _scan(text: str) -> _Scan:
    scan = _Scan()
    for raw in _joined(text):
        if raw.startswith("# "):  # a comment (the recorded samples' source line), not tool output
            continue
        scan.flags.update(_flags(raw))
        line = strip_prefix(raw)
        if line:
            scan.last = line
            _scan_line(scan, line)
    return scan


def _threads(scan: _Scan) -> int | None:
    for value in (scan.echo.get("num threads"), scan.echo.get("#threads used for cpu inference"),
                  scan.flags.get("num_threads")):
        if value and value.lstrip("-").isdigit():
            return int(value) if int(value) > 0 else None  # -1: the tool's default, not a count
    return None


def _delegates(scan: _Scan) -> dict[str, bool]:
    out = {}
    for key, name in DELEGATES.items():
        value = scan.echo.get(f"use {key}", scan.flags.get(f"use_{key}"))
        if value is not None:
            out[name] = _truthy(value)
    return out


def parse(text: str, source: str = "benchmark_model output") -> BenchmarkModelRun:
    """One run's numbers; a `DataError` naming `source` when it holds no finished run, or several."""
    scan = _scan(text)
    if not scan.timings:
        last = f" (its last line: '{scan.last[:120]}')" if scan.last else " (it is empty)"
        raise DataError(f"'{source}' has no 'Inference timings in us' line, so it is not the output of a finished "
                        f"benchmark_model run{last}")
    if len(scan.timings) > 1:
        raise DataError(f"'{source}' holds {len(scan.timings)} benchmark_model runs ('Inference timings' lines); "
                        "import one run per file")
    init, first, warmup, avg = scan.timings[0]
    steady = next((s for _, s in reversed(scan.counts) if s is not None), None)
    warmups = [count for count, s in scan.counts if s is not steady]
    graph = scan.echo.get("graph") or scan.loaded or scan.flags.get("graph")
    return BenchmarkModelRun(
        init_us=init, first_us=first, warmup_avg_us=warmup, inference_avg_us=avg, steady=steady,
        warmup_count=warmups[-1] if warmups else None, model=graph or None,
        signature=scan.echo.get("signature to run") or scan.flags.get("signature_to_run_for") or None,
        threads=_threads(scan), delegates=_delegates(scan), applied=dict(scan.applied), **scan.numbers)


def read(path: Path) -> BenchmarkModelRun:
    """`parse` of a file; an unreadable file is one line naming it."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read '{path}': {exc.strerror or exc}") from None
    return parse(text, str(path))
