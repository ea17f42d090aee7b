"""Remote runtimes over SSH, against an sshd this test starts on 127.0.0.1 with keys made for it
(skipped with the reason where sshd is not installed; `.ci/run` installs it): session calls and the
deferred suites' measuring processes run there, the host is recorded, and an unreachable host,
refused auth and a different harness version are one line each."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.errors import RuntimeUnavailable

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
pytestmark = pytest.mark.skipif(SSHD is None or shutil.which("ssh") is None,
                                reason="needs openssh-server (sshd) and the ssh client (installed by .ci/run)")
CLIENT_OPTIONS = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("sshd")
    for name in ("host", "client", "stranger"):
        _keygen(root / name)
    (root / "authorized_keys").write_text((root / "client.pub").read_text())
    port = _free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
        f"PidFile {root / 'sshd.pid'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\nAcceptEnv HF_HUB_OFFLINE\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stderr=subprocess.PIPE)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    else:
        process.kill()
        pytest.skip(f"sshd did not start: {process.stderr.read().decode()[-300:] if process.stderr else ''}")
    options = {"host": "127.0.0.1", "port": port, "user": getpass.getuser(), "identity_file": str(root / "client"),
               "python": sys.executable, "work_dir": str(root / "remote-work"), "ssh_options": CLIENT_OPTIONS}
    yield {"root": root, "options": options}
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory) -> tuple[Path, Any]:
    from . import exports

    path = tmp_path_factory.mktemp("artifact") / "0123abcd"
    loaded, _ = exports.build_artifact(path, [], {})
    return path, loaded


def test_a_remote_session_answers_as_the_local_runtime(sshd, tiny_artifact):
    from PIL import Image

    from harness.runtimes.remote import REMOTES

    path, loaded = tiny_artifact
    runtime = REMOTES["torch-eager"](sshd["options"])
    session = runtime.load(path)
    assert Path(session.artifact).parent == sshd["root"] / "remote-work"  # copied over the tar stream
    images = [Image.new("RGB", (48, 48), (200, 30, 30)), Image.new("RGB", (48, 48), (30, 30, 200))]
    questions = ["what color is the square ?", "how many objects are there ?"]
    want = loaded.generate(images, questions, max_new_tokens=4, keep_logits=True)
    got = session.generate(images, questions, max_new_tokens=4, keep_logits=True)
    assert got.token_ids == want.token_ids and got.texts == want.texts
    assert abs(got.first_logits - want.first_logits.numpy()).max() < 1e-5
    assert got.times.prefill_ms > 0 and len(got.times.decode_ms) == len(want.times.decode_ms)
    assert abs(session.encode_images(images) - loaded.encode_images(images)).max() < 1e-5
    info = runtime.info()
    assert info["identity"]["node"] == socket.gethostname() and "over ssh" in info["note"]


def test_a_deferred_suite_is_measured_by_its_own_process_on_the_host(sshd, tiny_artifact):
    from harness.registries import SUITE_KINDS
    from harness.runtimes.remote import REMOTES, remote_job

    path, _ = tiny_artifact
    kind = SUITE_KINDS.get("memory")
    config = kind.Config.model_validate({"name": "mem", "kind": "memory"})
    target, payload = REMOTES["torch-eager"](sshd["options"]).process_job(
        "memory", config, {"runtime": "remote-torch-eager", "artifact": str(path)})
    assert target == "harness.runtimes.remote:remote_job" and payload["inner_payload"]["runtime"] == "torch-eager"
    result = remote_job(payload)
    assert result["host"] == "127.0.0.1" and result["peak_rss_mb"] > 0
    assert result["device"] == "127.0.0.1 (ssh)"  # never paired with this machine's baseline rounds


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_unreachable_refused_and_mismatched_hosts_are_one_line(sshd, tiny_artifact, tmp_path):
    from harness.runtimes.remote import REMOTES

    path, _ = tiny_artifact
    closed = {**sshd["options"], "port": _free_port()}
    with pytest.raises(RuntimeUnavailable) as unreachable:
        REMOTES["litert"](closed).load(path)
    assert "host unreachable" in _one_line(unreachable.value)
    stranger = {**sshd["options"], "identity_file": str(sshd["root"] / "stranger")}
    with pytest.raises(RuntimeUnavailable) as refused:
        REMOTES["litert"](stranger).load(path)
    assert "Permission denied" in _one_line(refused.value) and "auth refused" in str(refused.value)
    other = tmp_path / "python-9.9"  # the host's harness reports another version
    other.write_text(f"#!/bin/sh\nexec {sys.executable} -c \"import harness, runpy; harness.__version__ = '9.9'; "
                     "runpy.run_module('harness.runtimes._remote_entry', run_name='__main__')\"\n")
    other.chmod(0o755)
    mismatched = {**sshd["options"], "python": str(other)}
    with pytest.raises(RuntimeUnavailable) as version:
        REMOTES["torch-eager"](mismatched).load(path)
    assert "runs fastvlm-harness 9.9" in _one_line(version.value) and "allow_version_mismatch" in str(version.value)
    allowed = REMOTES["torch-eager"]({**mismatched, "allow_version_mismatch": True})
    assert allowed.info()["identity"]["version_mismatch"] is True and "version differs" in allowed.info()["note"]
    problems, notes = REMOTES["litert"].preflight(closed)
    assert problems == [] and "host unreachable" in notes[0]
    assert "needs runtime_options.remote-litert.host" in REMOTES["litert"].preflight(None)[0][0]


@pytest.mark.slow
def test_a_nano_run_measures_litert_here_and_on_the_remote_host_side_by_side(sshd, tmp_path):
    """torch-eager, litert, executorch and remote-litert (the loopback host) in one run and one report."""
    from harness.run.runner import RunOptions, run

    recipe = tmp_path / "remote.yaml"
    recipe.write_text(
        "name: remote\nbase: nano\nbaseline: base\nruntimes: [torch-eager, litert, executorch, remote-litert]\n"
        "suites: [nano-vqa, latency, memory, size]\n"
        f"runtime_options:\n  remote-litert: {json.dumps(sshd['options'])}\n"
        "variants:\n  - name: base\n    steps: []\n  - name: tflite-fp32\n    steps: [{kind: export-tflite}]\n"
        "  - name: executorch-fp32\n    steps: [{kind: export-executorch}]\n")
    run_dir = run(recipe, options=RunOptions(output=tmp_path / "reports", progress=False, use_cache=False, limit=40))
    summary = json.loads((run_dir / "results.json").read_text())
    tflite = next(v for v in summary["variants"] if v["name"] == "tflite-fp32")
    here, there = tflite["runtimes"]["litert"], tflite["runtimes"]["remote-litert"]
    assert here["accuracy"]["nano-vqa"]["score"] == there["accuracy"]["nano-vqa"]["score"]
    assert there["latency"]["ttft_p50_ms"] > 0 and there["memory"]["peak_rss_mb"] > 0
    assert "ttft_ratio_to_baseline" not in there["latency"]  # the host's rounds are not this machine's
    assert "over ssh" in " ".join(tflite.get("notes", []))
    pte = next(v for v in summary["variants"] if v["name"] == "executorch-fp32")["runtimes"]["executorch"]
    assert pte["accuracy"]["nano-vqa"]["score"] > 0.8 and pte["latency"]["ttft_p50_ms"] > 0
    report = (run_dir / "report.html").read_text()
    assert "remote-litert" in report and "executorch" in report
