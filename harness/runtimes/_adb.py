"""The adb commands the `android-litert` runtime runs, each failure one line naming what was expected.

Why a module of its own: every way a phone can be unusable (adb missing, no device, the device
unauthorized or offline, a serial adb does not list, `benchmark_model` absent or not executable)
must become one `RuntimeUnavailable` / `RuntimeBackendError` line the run records for that runtime
alone, while the other runtimes go on. Everything goes through `adb -s SERIAL ...` with the
arguments quoted for the device's shell (adb joins `shell` arguments with spaces).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass

from harness.errors import RuntimeBackendError, RuntimeUnavailable

#: What `adb devices` says of a device that cannot be used, and what to do about it.
STATE_FIX = {
    "unauthorized": "accept the 'Allow USB debugging?' prompt on the phone (or revoke and re-accept the "
                    "authorisations in Developer options), then rerun",
    "offline": "the device is not answering adb: reconnect the cable or run `adb kill-server`, then rerun",
    "no permissions": "the host user may not open the USB device: add a udev rule for it (adb's docs), then rerun",
    "recovery": "the device is in recovery: boot it normally",
    "bootloader": "the device is in the bootloader: boot it normally",
}
#: Properties recorded as the device's identity (the first one set of each tuple).
PROPERTIES = {"model": ("ro.product.model",), "manufacturer": ("ro.product.manufacturer",),
              "soc": ("ro.soc.model", "ro.board.platform", "ro.hardware"),
              "android": ("ro.build.version.release",), "sdk": ("ro.build.version.sdk",),
              "abi": ("ro.product.cpu.abi",)}
GOVERNOR = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
_NOT_FOUND = ("not found", "No such file or directory", "inaccessible or not found")
_DENIED = ("Permission denied", "not executable", "cannot execute")


@dataclass(frozen=True)
class Adb:
    """adb for one device; `serial` None takes the one device adb lists."""

    executable: str = "adb"
    serial: str | None = None
    timeout_s: float = 600.0

    def _run(self, args: list[str], what: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        path = shutil.which(self.executable)
        if path is None:
            raise RuntimeUnavailable(f"android-litert: '{self.executable}' is not on PATH: install the Android "
                                     "platform tools (adb) or set runtime_options.android-litert.adb")
        serial = ["-s", self.serial] if self.serial else []
        try:
            return subprocess.run([path, *serial, *args], capture_output=True, text=True, errors="replace",
                                  timeout=timeout or self.timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeBackendError(f"android-litert: adb {what} did not finish within "
                                      f"{timeout or self.timeout_s:.0f} s (timeout_s)") from None

    def devices(self) -> dict[str, str]:
        """Serial → state (`device`, `unauthorized`, `offline`, …) as `adb devices` lists them."""
        done = Adb(self.executable, None, self.timeout_s)._run(["devices"], "devices", timeout=60)
        if done.returncode != 0:
            raise RuntimeUnavailable(f"android-litert: `adb devices` failed: {_first(done)}")
        out = {}
        for line in done.stdout.splitlines()[1:]:
            parts = line.split("\t") if "\t" in line else line.split(None, 1)
            if len(parts) == 2 and parts[0].strip():
                out[parts[0].strip()] = parts[1].strip()
        return out

    def ready(self) -> Adb:
        """This adb with its serial settled, once the device is listed as usable; else one line."""
        listed = self.devices()
        if self.serial is None:
            usable = [s for s, state in listed.items() if state == "device"]
            if not listed:
                raise RuntimeUnavailable("android-litert: no device connected (`adb devices` lists none): connect "
                                         "a phone with USB debugging on, or set runtime_options.android-litert.serial")
            if len(listed) > 1:
                raise RuntimeUnavailable(f"android-litert: {len(listed)} devices are connected "
                                         f"({', '.join(listed)}): set runtime_options.android-litert.serial to one")
            serial = next(iter(listed))
            if not usable:
                raise RuntimeUnavailable(_state_line(serial, listed[serial]))
            return Adb(self.executable, serial, self.timeout_s)
        if not listed:
            raise RuntimeUnavailable(f"android-litert: no device connected (`adb devices` lists none; serial "
                                     f"'{self.serial}' was asked for): connect the phone with USB debugging on")
        if self.serial not in listed:
            which = ", ".join(f"{s} ({state})" for s, state in listed.items()) or "none"
            raise RuntimeUnavailable(f"android-litert: serial '{self.serial}' is not among the devices adb lists "
                                     f"({which}): fix runtime_options.android-litert.serial")
        if listed[self.serial] != "device":
            raise RuntimeUnavailable(_state_line(self.serial, listed[self.serial]))
        return self

    def shell(self, *args: str, what: str | None = None) -> subprocess.CompletedProcess[str]:
        return self._run(["shell", " ".join(shlex.quote(a) for a in args)], what or f"shell {args[0]}")

    def push(self, local: str, remote: str) -> None:
        done = self._run(["push", "--sync", local, remote], f"push {local}")
        if done.returncode != 0:
            raise RuntimeBackendError(f"android-litert: adb push {local} {remote} failed: {_first(done)}")

    def getprop(self, name: str) -> str | None:
        done = self.shell("getprop", name)
        value = done.stdout.strip()
        return value if done.returncode == 0 and value else None

    def identity(self) -> dict[str, str | None]:
        """Model, maker, SoC, Android version, SDK, ABI and the CPU governor (None when unreadable)."""
        out: dict[str, str | None] = {"serial": self.serial}
        for key, names in PROPERTIES.items():
            out[key] = next((v for v in (self.getprop(n) for n in names) if v), None)
        done = self.shell("cat", GOVERNOR)
        governor = done.stdout.strip()
        out["cpufreq_governor"] = governor if done.returncode == 0 and governor and " " not in governor else None
        return out

    def check_executable(self, path: str) -> None:
        """`benchmark_model` is on the device and executable (`ls -l` of it), else one line."""
        done = self.shell("ls", "-l", path)
        text = f"{done.stdout} {done.stderr}"
        if done.returncode != 0 or any(n in text for n in _NOT_FOUND):
            raise RuntimeUnavailable(missing_line(path))
        mode = done.stdout.split()[0] if done.stdout.split() else ""
        if not mode.startswith("-") or "x" not in mode:
            raise RuntimeUnavailable(not_executable_line(path, mode or text.strip()))


def missing_line(path: str) -> str:
    return (f"android-litert: benchmark_model is not at '{path}' on the device: push LiteRT's prebuilt "
            f"android benchmark_model there (`adb push benchmark_model {path} && adb shell chmod +x {path}`, "
            "docs/devices.md) or set runtime_options.android-litert.benchmark_model")


def not_executable_line(path: str, mode: str) -> str:
    return (f"android-litert: '{path}' on the device is not executable ({mode[:60]}): `adb shell chmod +x {path}`; "
            "keep it under /data/local/tmp (shared storage such as /sdcard is mounted noexec)")


def failure_line(path: str, done: subprocess.CompletedProcess[str]) -> str | None:
    """The one line for a benchmark_model run the device's shell could not start, or None."""
    text = f"{done.stdout}\n{done.stderr}"
    if done.returncode == 127 or any(n in text for n in _NOT_FOUND) and "Inference timings" not in text:
        return missing_line(path)
    if done.returncode == 126 or any(n in text for n in _DENIED) and "Inference timings" not in text:
        return not_executable_line(path, "Permission denied")
    return None


def _state_line(serial: str, state: str) -> str:
    fix = next((f for key, f in STATE_FIX.items() if state.startswith(key)), "make it show as 'device' in "
                                                                           "`adb devices`")
    return f"android-litert: device '{serial}' is {state}: {fix}"


def _first(done: subprocess.CompletedProcess[str]) -> str:
    text = (done.stderr or done.stdout or "").strip()
    return (text.splitlines() or [f"exit code {done.returncode}"])[0][:300]
