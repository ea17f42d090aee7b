"""The JSON an app on a device writes so that `harness device import` can take its numbers: which
device and software measured which variant, and per launch of the app its cold start and, per
timed iteration, the TTFT stages the harness itself times (`harness.suites._latency_measure.STAGES`).

Why a format of our own: `benchmark_model` times one graph on random inputs, but TTFT is image
preprocessing + vision encode + prefill, and decode speed needs the generation loop; only an app
that runs the real pipeline can time those, and the harness must know exactly what it timed.
The JSON Schema is `json_schema()`, published as docs/device-results.schema.json.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from harness.errors import DataError
from harness.spec.base import NAME_PATTERN, Strict

FORMAT = "fastvlm-harness/device-results"
VERSION = 1
#: A stage's time may fall short of the sum of the stages before the first token by this fraction
#: (clock granularity) before TTFT is called inconsistent.
TTFT_TOLERANCE = 0.01
Ms = list[float]


class Device(Strict):
    """The device that measured."""

    model: str = Field(min_length=1, description="the device as its maker names it, e.g. 'Pixel 8'")
    soc: str = Field(min_length=1, description="its system on chip, e.g. 'Google Tensor G3'")
    os: str = Field(min_length=1, description="e.g. 'Android', 'iOS'")
    os_version: str = Field(min_length=1, description="e.g. '14'")


class App(Strict):
    """The app and the runtime it ran the variant's exported graphs with."""

    name: str = Field(min_length=1, description="the measuring app, e.g. 'fastvlm-bench'")
    version: str = Field(min_length=1)
    runtime: str = Field(min_length=1, description="e.g. 'LiteRT', 'Core ML', 'ONNX Runtime Mobile'")
    runtime_version: str = Field(min_length=1)
    delegate: str | None = Field(None, description="accelerator or delegate, e.g. 'XNNPACK', 'GPU', 'NNAPI'")
    threads: int | None = Field(None, ge=1, description="CPU threads the runtime was given")


class ColdStart(Strict):
    """The first answer after a fresh launch, reported apart from the timed iterations."""

    load_ms: float = Field(ge=0, description="loading the model files until the first answer can start")
    first_generation_ms: float = Field(ge=0, description="the first whole answer after loading")


class Samples(Strict):
    """Per timed iteration (one batch-1 answer of `new_tokens` tokens), milliseconds per stage. Every
    list has one value per iteration, in order; give `decode_token_ms` or `decode_tokens_per_s` (or both)."""

    preprocess_ms: Ms = Field(min_length=1, description="image decode/resize/normalise and prompt tokenization")
    vision_ms: Ms = Field(min_length=1, description="vision encoder + projector")
    prefill_ms: Ms = Field(min_length=1, description="the prompt (image tokens + text) through the LLM")
    ttft_ms: Ms = Field(min_length=1, description="time to first token: preprocess + vision + prefill, or "
                                                  "more, never less")
    decode_token_ms: Ms | None = Field(None, min_length=1, description="mean time per generated token after "
                                                                       "the first")
    decode_tokens_per_s: Ms | None = Field(None, min_length=1, description="generated tokens per second "
                                                                           "after the first")
    total_ms: Ms | None = Field(None, min_length=1, description="the whole answer")

    @model_validator(mode="after")
    def _consistent(self) -> Samples:
        """Equal lengths, positive values, a decode measure, and a TTFT no shorter than its stages."""
        given = {k: v for k, v in self if v is not None}
        n = len(self.ttft_ms)
        for name, values in given.items():
            if len(values) != n:
                raise ValueError(f"{name} has {len(values)} values but ttft_ms has {n}: give one value per "
                                 "iteration in every list")
            bad = next((i for i, x in enumerate(values) if not x > 0 or x == float("inf")), None)
            if bad is not None:
                raise ValueError(f"{name}[{bad}] = {values[bad]}: every time is a positive number of milliseconds")
        if self.decode_token_ms is None and self.decode_tokens_per_s is None:
            raise ValueError("give decode_token_ms or decode_tokens_per_s: decode speed is half of what is measured")
        for i in range(n):
            stages = self.preprocess_ms[i] + self.vision_ms[i] + self.prefill_ms[i]
            if self.ttft_ms[i] < stages * (1 - TTFT_TOLERANCE):
                raise ValueError(f"ttft_ms[{i}] = {self.ttft_ms[i]:g} is less than preprocess + vision + prefill = "
                                 f"{stages:g}: TTFT includes every stage before the first token (same units?)")
        return self

    def stage_samples(self) -> dict[str, list[float]]:
        """The harness's per-iteration samples: both decode measures (each derived from the other)."""
        token_ms = self.decode_token_ms or [1e3 / x for x in self.decode_tokens_per_s or []]
        per_s = self.decode_tokens_per_s or [1e3 / x for x in token_ms]
        out = {"preprocess_ms": list(self.preprocess_ms), "vision_ms": list(self.vision_ms),
               "prefill_ms": list(self.prefill_ms), "ttft_ms": list(self.ttft_ms),
               "decode_token_ms": list(token_ms), "decode_tokens_per_s": list(per_s)}
        if self.total_ms is not None:
            out["total_ms"] = list(self.total_ms)
        return out


class Run(Strict):
    """One fresh launch of the app (a process: its memory layout and thread placement move all of its
    timings together, so launches, not iterations, are the replicates)."""

    cold_start: ColdStart
    samples: Samples
    measured_seconds: float | None = Field(None, ge=0, description="wall seconds of the timed iterations "
                                                                   "(default: estimated from the samples)")
    peak_memory_mb: float | None = Field(None, gt=0, description="peak memory footprint of the app's process "
                                                                 "during load and the answers, MiB (2^20 bytes)")
    baseline_memory_mb: float | None = Field(None, ge=0, description="the process's footprint before the model "
                                                                     "was loaded, MiB; peak minus it is the model's")

    @model_validator(mode="after")
    def _memory(self) -> Run:
        if self.baseline_memory_mb is not None and self.peak_memory_mb is None:
            raise ValueError("baseline_memory_mb without peak_memory_mb: give the peak too, or neither")
        if self.peak_memory_mb is not None and self.baseline_memory_mb is not None \
                and self.baseline_memory_mb > self.peak_memory_mb:
            raise ValueError(f"baseline_memory_mb {self.baseline_memory_mb:g} is above peak_memory_mb "
                             f"{self.peak_memory_mb:g}: the baseline is the footprint before loading")
        return self


class DeviceResults(Strict):
    """What an app measured of one variant on one device (`harness device import`, docs/devices.md)."""

    format: Literal["fastvlm-harness/device-results"] = Field(description="always this string")
    version: Literal[1] = Field(description="the format's version")
    variant: str = Field(pattern=NAME_PATTERN, description="the run's variant whose exported files were measured")
    artifact_key: str | None = Field(None, description="the variant's build key (`build.key` of its run result): "
                                                       "checked against the run's when given")
    measured_at: datetime | None = Field(None, description="when, ISO 8601")
    device: Device
    app: App
    new_tokens: int = Field(ge=1, description="tokens generated per iteration (min = max, greedy)")
    batch_size: Literal[1] = Field(1, description="one image and question per answer")
    visual_tokens: int | None = Field(None, ge=1, description="image tokens the LLM saw")
    warmup: int | None = Field(None, ge=0, description="untimed iterations before the timed ones")
    runs: list[Run] = Field(min_length=1, description="one entry per fresh launch of the app")
    notes: str | None = None

    def latency_processes(self) -> list[dict[str, Any]]:
        """One harness latency-process result per launch (what `_latency_measure.measure` returns)."""
        out = []
        for run in self.runs:
            samples = run.samples.stage_samples()
            seconds = run.measured_seconds
            if seconds is None:
                seconds = sum(t + d * self.new_tokens for t, d in zip(samples["ttft_ms"], samples["decode_token_ms"],
                                                                       strict=True)) / 1e3
            out.append({"cold_start": {"load_ms": run.cold_start.load_ms, "first_ttft_ms": None,
                                       "first_generation_ms": run.cold_start.first_generation_ms},
                        "samples": samples, "iterations": len(samples["ttft_ms"]), "measured_seconds": seconds,
                        "measured_seconds_estimated": run.measured_seconds is None,
                        "new_tokens": self.new_tokens, "batch_size": 1, "threads": self.app.threads,
                        "cpu": self.device.soc, "visual_tokens": self.visual_tokens, "kv_cache_bytes": None,
                        "processes": 1})
        return out

    def identity(self) -> dict[str, Any]:
        """Who measured with what, as recorded with the imported numbers."""
        return {"device": self.device.model_dump(), "app": self.app.model_dump(),
                "measured_at": self.measured_at.isoformat() if self.measured_at else None, "notes": self.notes}


def json_schema() -> dict[str, Any]:
    """The format's JSON Schema (docs/device-results.schema.json is this, checked by a test)."""
    schema = DeviceResults.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema,
            "title": "fastvlm-harness device results"}


def _fix(err: dict[str, Any]) -> str:
    """What to do about one validation error, in a few words."""
    from harness.spec.messages import error_message

    kind = err["type"]
    if kind == "missing":
        return "missing: add it (docs/devices.md shows every field)"
    message = error_message(err, DeviceResults)
    if kind in ("float_type", "float_parsing", "int_type", "int_parsing", "list_type"):
        return f"{message} (got {json.dumps(err.get('input'), default=str)[:40]})"
    return message


def validation_message(exc: ValidationError, source: str) -> str:
    """One line: the file, the first field at fault and its fix (and how many more problems there are)."""
    errors = exc.errors()
    first = errors[0]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".") or "(top level)"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{source}: {field}: {_fix(first)}{more}"


def parse(data: Any, source: str) -> DeviceResults:
    """Validated device results; a `DataError` of one line naming `source`, the field and the fix."""
    if not isinstance(data, dict):
        raise DataError(f"{source}: the top level is a {type(data).__name__}, not an object: see docs/devices.md")
    if data.get("format") != FORMAT:
        raise DataError(f"{source}: format: {data.get('format')!r} is not '{FORMAT}': is this a device-results "
                        "file (docs/devices.md)?")
    try:
        return DeviceResults.model_validate(data)
    except ValidationError as exc:
        raise DataError(validation_message(exc, source)) from None


def loads(text: str, source: str) -> DeviceResults:
    """`parse` of JSON text; malformed JSON is one line naming `source`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{source}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    return parse(data, source)


def load(path: Path) -> DeviceResults:
    """`loads` of a file; an unreadable one is one line naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read '{path}': {getattr(exc, 'strerror', None) or exc}") from None
    return loads(text, str(path))
