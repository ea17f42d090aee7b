"""LiteRT on an Android phone over adb: the variant's `exports/tflite/` graphs pushed to the device
and timed there by LiteRT's prebuilt `benchmark_model` (the user puts the binary on the phone;
nothing is downloaded), one run per graph signature, for the `latency` and `memory` suites.

`benchmark_model` times graphs on random inputs; it does not generate, so the accuracy kinds (and
the automatic parity check) are recorded *not applicable* on this runtime by the plan, from
`suite_kinds` below. The numbers and what they leave out: `harness.runtimes._android_measure`.
Settings: `runtime_options: {android-litert: {...}}` in the recipe (`Config`), with
`HARNESS_ANDROID_*` environment overrides (`harness.runtimes._android_settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from harness.errors import RuntimeBackendError
from harness.registries import RUNTIMES
from harness.runtimes._android_settings import AndroidOptions, settings

MEASURE = "harness.runtimes._android_measure"


class DeviceSession:
    """What `load` returns: the device checked and the graphs found; it cannot generate."""

    def __init__(self, serial: str | None) -> None:
        self.serial = serial

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeBackendError(f"android-litert: {AndroidLiteRT.not_measured}")

    def encode_images(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeBackendError(f"android-litert: {AndroidLiteRT.not_measured}")


@RUNTIMES.register("android-litert", "LiteRT benchmark_model on an Android phone over adb (latency, memory of "
                                     "exports/tflite graphs; nothing downloaded)")
class AndroidLiteRT:
    accepts: ClassVar[tuple[str, ...]] = ("tflite",)
    Config: ClassVar[type[AndroidOptions]] = AndroidOptions
    #: The suite kinds this runtime measures; the plan records every other kind not applicable.
    suite_kinds: ClassVar[tuple[str, ...]] = ("latency", "memory", "size")
    not_measured: ClassVar[str] = ("benchmark_model times the graphs on random inputs; it does not generate, so "
                                   "answers (accuracy, parity) cannot be scored on this runtime")

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = options or {}

    def load(self, artifact: Path) -> DeviceSession:
        """The device ready and `benchmark_model` executable on it, and the graphs the estimate needs
        in the export — else one `RuntimeUnavailable` / `RuntimeBackendError` line."""
        from harness.runtimes._adb import Adb
        from harness.runtimes._android_measure import graph_plan

        options = settings(self.options)
        graph_plan(artifact)
        adb = Adb(options.adb, options.serial, options.timeout_s).ready()
        adb.check_executable(options.benchmark_model)
        return DeviceSession(adb.serial)

    def process_job(self, kind: str, config: Any, job: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The measuring process of a deferred suite kind on the phone (the rounds call this
        instead of the kind's own, which would load and generate)."""
        target = {"latency": "measure_latency", "memory": "measure_memory"}.get(kind)
        if target is None:
            return None
        return f"{MEASURE}:{target}", {"artifact": job["artifact"], "options": self.options,
                                       "config": config.model_dump(mode="json")}

    @classmethod
    def preflight(cls, options: dict[str, Any] | None) -> tuple[list[str], list[str]]:
        """(problems that stop the run, notes): bad settings and a missing adb stop it; a device
        that is not usable now is a note — its suites are recorded unavailable, the run goes on."""
        import shutil

        from harness.errors import HarnessError
        from harness.runtimes._adb import Adb

        try:
            resolved = settings(options)
        except HarnessError as exc:
            return [f"runtime 'android-litert': {exc}"], []
        if shutil.which(resolved.adb) is None:
            return [f"runtime 'android-litert' needs '{resolved.adb}' on PATH (the Android platform tools); install "
                    "them or set runtime_options.android-litert.adb"], []
        try:
            Adb(resolved.adb, resolved.serial, 60).ready()
        except HarnessError as exc:
            return [], [f"{exc} (its latency and memory suites will be recorded unavailable)"]
        return [], []

    def info(self) -> dict[str, Any]:
        """Settings and, when the device answers, its identity (never raises: info must not break a run)."""
        from harness.errors import HarnessError
        from harness.runtimes._adb import Adb

        out: dict[str, Any] = {"runtime": "android-litert", "tool": "benchmark_model (LiteRT, on the device)",
                               "measures": "graph times on random inputs; TTFT and decode are estimates from them"}
        try:
            options = settings(self.options)
            out["settings"] = options.model_dump()
            out["device"] = Adb(options.adb, options.serial, 60).ready().identity()
        except HarnessError as exc:
            out["error"] = str(exc)
            return out
        out["note"] = note(out["device"], options)
        return out


def note(device: dict[str, Any], options: AndroidOptions) -> str:
    """The variant's note: which phone, how, and what the numbers are and leave out."""
    from harness.runtimes._android_measure import NOT_INCLUDED

    governor = f", cpufreq governor {device['cpufreq_governor']}" if device.get("cpufreq_governor") else ""
    return (f"measured on {device.get('manufacturer') or ''} {device.get('model') or 'an Android device'} "
            f"({device.get('soc') or 'SoC unknown'}, Android {device.get('android') or '?'}{governor}; serial "
            f"{device.get('serial')}) by benchmark_model, {options.threads} threads, delegate {options.delegate}; "
            "TTFT is an estimate: vision encode + the image tokens' prefill chunks + the first decode step, each "
            "graph timed alone on random inputs; decode = one decode step; memory = the graph files' footprint "
            f"growth summed; not included: {', '.join(NOT_INCLUDED)}").replace("  ", " ").replace("( ", "(")
