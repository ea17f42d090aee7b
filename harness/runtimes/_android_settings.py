"""The `android-litert` runtime's settings: the recipe's `runtime_options: {android-litert: {...}}`,
validated by `AndroidOptions` (the runtime class declares it as its `Config`, so the recipe checks
it like a step's config), with environment overrides for CI (`HARNESS_ANDROID_*`)."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, ValidationError

from harness.errors import ConfigError
from harness.spec.base import Strict

DELEGATE_FLAGS = {"xnnpack": ("true", "false"), "gpu": ("false", "true"), "none": ("false", "false")}
#: Field → the environment variable that overrides the recipe's value (CI sets the phone's serial).
ENV = {"serial": "HARNESS_ANDROID_SERIAL", "benchmark_model": "HARNESS_ANDROID_BENCHMARK_MODEL",
       "threads": "HARNESS_ANDROID_THREADS", "delegate": "HARNESS_ANDROID_DELEGATE", "runs": "HARNESS_ANDROID_RUNS",
       "adb": "HARNESS_ANDROID_ADB"}


class AndroidOptions(Strict):
    """Where the phone is and how `benchmark_model` runs on it (docs/devices.md)."""

    serial: str | None = Field(None, min_length=1, description="the device's serial as `adb devices` lists it; "
                                                               "unset: the one device connected")
    benchmark_model: str = Field("/data/local/tmp/benchmark_model", min_length=1,
                                 description="path ON THE DEVICE of LiteRT's prebuilt android benchmark_model "
                                             "binary (pushed there by you; nothing is downloaded)")
    device_dir: str = Field("/data/local/tmp/fastvlm-harness", min_length=1,
                            description="folder on the device the variant's graphs are pushed to (one sub-folder "
                                        "per build key)")
    threads: int = Field(4, ge=1, description="--num_threads")
    delegate: Literal["xnnpack", "gpu", "none"] = Field(
        "xnnpack", description="xnnpack: --use_xnnpack=true; gpu: --use_gpu=true (XNNPACK off); none: neither "
                               "(the builtin CPU kernels)")
    runs: int | None = Field(None, ge=1, description="--num_runs; unset: the latency suite's min_iterations")
    warmup_runs: int | None = Field(None, ge=0, description="--warmup_runs; unset: the latency suite's warmup")
    report_peak_memory: bool = Field(True, description="pass --report_peak_memory_footprint=true on memory runs "
                                                       "(turn off for an old benchmark_model that lacks the flag)")
    adb: str = Field("adb", min_length=1, description="the adb executable on this machine")
    timeout_s: float = Field(600, gt=0, description="longest one adb command may take")

    def flags(self) -> list[str]:
        xnnpack, gpu = DELEGATE_FLAGS[self.delegate]
        return [f"--num_threads={self.threads}", f"--use_xnnpack={xnnpack}", f"--use_gpu={gpu}"]


def settings(options: dict[str, Any] | None) -> AndroidOptions:
    """The recipe's options with the environment's overrides; a bad value is one line naming the
    field and where it came from (the recipe was validated already, so it is the environment)."""
    data = dict(options or {})
    given = {field: os.environ[var] for field, var in ENV.items() if os.environ.get(var)}
    try:
        return AndroidOptions.model_validate({**data, **given})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "(options)"
        where = f"{ENV[field]}={given[field]!r}" if field in given else f"runtime_options.android-litert.{field}"
        raise ConfigError(f"{where}: {err['msg']}") from None
