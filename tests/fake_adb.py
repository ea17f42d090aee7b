"""A test double of `adb` and the phone behind it, for tests/test_android_runtime.py.

`install(folder, state)` writes an executable `adb` into `folder` (put it first on PATH) that reads
its device from the JSON file `FAKE_ADB_STATE` names and appends every command line it was given
to the state's `log` file. It answers the commands the android-litert runtime runs, the way adb
and the device's shell answer them: `devices`; `-s SERIAL ...` (a serial not listed: "device not
found"; an unauthorized one: adb's refusal); `push [--sync] LOCAL REMOTE` (the remote path is
remembered); `shell` with getprop, `cat` of the cpufreq governor, `mkdir -p`, `ls -l`, and the
benchmark_model binary — which prints the recorded real output (tests/data/benchmark_model/) the
state gives for that `--signature_to_run_for` (`memory_outputs` on a run with
`--report_peak_memory_footprint=true`, when given), or sh's "not found" / "Permission denied" (exit
127 / 126) when the binary is missing or not executable, or `garbage` text.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

SCRIPT = r'''#!{python}
import json, os, shlex, sys
from pathlib import Path

state_file = Path(os.environ["FAKE_ADB_STATE"])
state = json.loads(state_file.read_text())
args = sys.argv[1:]
with open(state["log"], "a") as log:
    log.write(json.dumps(args) + "\n")
devices = state.get("devices", {{}})

def fail(text, code=1):
    sys.stderr.write(text + "\n")
    sys.exit(code)

if args[:1] == ["devices"]:
    print("List of devices attached")
    for serial, status in devices.items():
        print(f"{{serial}}\t{{status}}")
    print()
    sys.exit(0)
serial = None
if args[:1] == ["-s"]:
    serial, args = args[1], args[2:]
elif len(devices) != 1:
    fail("adb: more than one device/emulator" if devices else "adb: no devices/emulators found")
else:
    serial = next(iter(devices))
if serial not in devices:
    fail(f"adb: device '{{serial}}' not found")
if devices[serial] == "unauthorized":
    fail("adb: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set")
if args[0] == "push":
    local, remote = [a for a in args[1:] if not a.startswith("--")]
    if not Path(local).is_file():
        fail(f"adb: error: cannot stat '{{local}}': No such file or directory")
    state.setdefault("pushed", []).append(remote)
    state_file.write_text(json.dumps(state))
    print(f"{{local}}: 1 file pushed, 0 skipped.")
    sys.exit(0)
if args[0] != "shell":
    fail(f"adb: unknown command {{args[0]}}")
words = shlex.split(" ".join(args[1:]))
binary = state["benchmark_model"]
if words[0] == "getprop":
    print(state.get("props", {{}}).get(words[1], ""))
elif words[0] == "cat":
    if state.get("governor") is None:
        fail(f"cat: {{words[1]}}: Permission denied")
    print(state["governor"])
elif words[0] == "mkdir":
    pass
elif words[0] == "ls":
    if state.get("binary") == "missing":
        fail(f"ls: {{words[-1]}}: No such file or directory")
    mode = "-rw-rw-rw-" if state.get("binary") == "noexec" else "-rwxr-xr-x"
    print(f"{{mode}} 1 shell shell 6291456 2026-11-30 10:00 {{words[-1]}}")
elif words[0] == binary:
    if state.get("binary") == "missing":
        fail(f"/system/bin/sh: {{binary}}: not found", 127)
    if state.get("binary") == "noexec":
        fail(f"/system/bin/sh: {{binary}}: can't execute: Permission denied", 126)
    flags = dict(w[2:].split("=", 1) for w in words[1:] if w.startswith("--") and "=" in w)
    if flags["graph"] not in state.get("pushed", []):
        fail(f"ERROR: Could not open '{{flags['graph']}}'.", 1)
    if state.get("garbage"):
        print(state["garbage"])
        sys.exit(1)
    memory = flags.get("report_peak_memory_footprint") == "true" and state.get("memory_outputs")
    outputs = state["memory_outputs"] if memory else state["outputs"]
    print(Path(outputs[flags["signature_to_run_for"]]).read_text())
else:
    fail(f"/system/bin/sh: {{words[0]}}: not found", 127)
'''


def install(folder: Path, state: dict) -> Path:
    """The fake adb in `folder`, its state file written; returns the state file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    adb = folder / "adb"
    adb.write_text(SCRIPT.format(python=sys.executable))
    adb.chmod(adb.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    path = folder / "state.json"
    path.write_text(json.dumps({"log": str(folder / "adb.log"), **state}))
    return path


def commands(state_file: Path) -> list[list[str]]:
    """Every command line the fake adb was given, in order."""
    log = Path(json.loads(state_file.read_text())["log"])
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def update(state_file: Path, **changes: object) -> None:
    state = json.loads(state_file.read_text())
    state.update(changes)
    state_file.write_text(json.dumps(state))

