"""Any runtime measured on another machine over SSH — a Mac for Core ML and MLX, an ARM board, a
Jetson — as `remote-<runtime>` (`remote-coreml`, `remote-litert`, …): one wrapper, not a copy per
runtime. The artifact is copied to the host (one tar stream over ssh), and the harness installed
there does the measuring with the inner runtime: session calls for the immediate suites
(accuracy, parity), and the suite kinds' own measuring processes for latency and memory, so the
numbers are the same measurements as here, taken there. The host's identity and harness version
are recorded; a different version is refused unless `allow_version_mismatch`.
Settings: `runtime_options: {remote-<runtime>: {host: ..., ...}}` (`RemoteOptions`)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import RuntimeBackendError, RuntimeUnavailable
from harness.registries import RUNTIMES
from harness.runtimes import coreml, litert, mlx, onnxruntime, torch_eager  # noqa: F401 - the inner runtimes
from harness.runtimes._remote_settings import RemoteOptions

INNER = ("torch-eager", "onnxruntime", "litert", "coreml", "mlx")
ENTRY = "harness.runtimes._remote_entry"


def call(options: RemoteOptions, request: dict[str, Any]) -> Any:
    """One request to the host's entry point; its answer, or one line saying why not."""
    import shlex

    from harness.runtimes._remote_entry import RESULT_MARK
    from harness.runtimes._ssh import Ssh

    stdout = Ssh(options).run(f"{shlex.quote(options.python)} -m {ENTRY}", stdin=json.dumps(request).encode())
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_MARK)]
    if not lines:
        raise RuntimeBackendError(f"{options.host}: the harness entry point gave no answer (is fastvlm-harness "
                                  f"installed for '{options.python}' there?)")
    answer = json.loads(lines[-1][len(RESULT_MARK):])
    if not answer["ok"]:
        raise RuntimeBackendError(f"{options.host}: {request['op']} failed there: {answer['error']}")
    return answer["result"]


def checked_identity(options: RemoteOptions) -> dict[str, Any]:
    """The host's identity; a harness version other than ours is refused unless allowed."""
    import harness

    host = call(options, {"op": "identity"})
    if host["harness"] != harness.__version__ and not options.allow_version_mismatch:
        raise RuntimeUnavailable(f"{options.host} runs fastvlm-harness {host['harness']}, this machine "
                                 f"{harness.__version__}; install the same version there or set "
                                 "allow_version_mismatch: true")
    return {**host, "version_mismatch": host["harness"] != harness.__version__}


def copy_artifact(options: RemoteOptions, artifact: Path) -> str:
    """The artifact folder on the host (copied once per build key: the folder name is the key)."""
    import shlex

    from harness.runtimes._ssh import Ssh

    ssh = Ssh(options)
    remote = f"{options.work_dir.rstrip('/')}/{artifact.name}"
    probe = ssh.run(f"test -f {shlex.quote(remote)}/.copied && echo yes || echo no").strip()
    if probe != "yes":
        ssh.put_folder(artifact, options.work_dir)
        ssh.run(f"touch {shlex.quote(remote)}/.copied")
    return ssh.run(f"cd {shlex.quote(remote)} && pwd").strip()


class RemoteSession:
    """A session whose calls run on the host: the suites use it like any runtime's session."""

    def __init__(self, options: RemoteOptions, inner: str, artifact: str) -> None:
        self.options, self.inner, self.artifact = options, inner, artifact

    def _request(self, op: str, images: list[Any], **fields: Any) -> Any:
        encoded = []
        for image in images:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
            encoded.append(base64.b64encode(buffer.getvalue()).decode())
        return call(self.options, {"op": op, "runtime": self.inner, "artifact": self.artifact, "images": encoded,
                                   **fields})

    def generate(self, images: list[Any], questions: list[str], max_new_tokens: int = 8, min_new_tokens: int = 0,
                 keep_logits: bool = False) -> Any:
        import numpy as np

        from harness.models.fastvlm import Generation, StageTimes

        out = self._request("generate", images, questions=list(questions), max_new_tokens=max_new_tokens,
                            min_new_tokens=min_new_tokens, keep_logits=keep_logits)
        logits = None if out["first_logits"] is None else np.asarray(out["first_logits"], dtype=np.float32)
        return Generation(out["texts"], out["token_ids"], StageTimes(**out["times"]), logits)

    def encode_images(self, images: list[Any]) -> Any:
        import numpy as np

        return np.asarray(self._request("encode", images)["features"], dtype=np.float32)


def remote_job(payload: dict[str, Any]) -> Any:
    """A deferred suite's measuring process, run on the host (this process copies and waits)."""
    options = RemoteOptions.model_validate(payload["options"])
    checked_identity(options)
    artifact = copy_artifact(options, Path(payload["artifact"]))
    inner = {**payload["inner_payload"], "artifact": artifact, "recipe_dir": None}
    result = call(options, {"op": "job", "target": payload["target"], "payload": inner})
    # `device`: rounds on another machine are never paired with this machine's baseline rounds
    return {**result, "host": options.host, "device": f"{options.host} (ssh)"} if isinstance(result, dict) else result


class Remote:
    """The wrapper; `remote_runtime(inner)` makes one registered class per inner runtime."""

    inner: ClassVar[str] = ""
    accepts: ClassVar[tuple[str, ...]] = ()
    Config: ClassVar[type[RemoteOptions]] = RemoteOptions

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        if not options:
            raise RuntimeUnavailable(f"runtime 'remote-{self.inner}' needs runtime_options.remote-{self.inner}.host")
        self.options = RemoteOptions.model_validate(options)
        self._identity: dict[str, Any] | None = None

    def identity(self) -> dict[str, Any]:
        """The host's checked identity, asked once per instance (each ask starts the host's Python)."""
        if self._identity is None:
            self._identity = checked_identity(self.options)
        return self._identity

    def load(self, artifact: Path) -> RemoteSession:
        self.identity()
        return RemoteSession(self.options, self.inner, copy_artifact(self.options, artifact))

    def process_job(self, kind: str, config: Any, job: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The kind's own measuring process with the inner runtime, run on the host."""
        from harness.registries import SUITE_KINDS

        target, payload = SUITE_KINDS.get(kind)().process_job(config, {**job, "runtime": self.inner})
        return f"{__name__}:remote_job", {"options": self.options.model_dump(), "artifact": job["artifact"],
                                          "target": target, "inner_payload": payload}

    def info(self) -> dict[str, Any]:
        from harness.errors import HarnessError

        out: dict[str, Any] = {"runtime": f"remote-{self.inner}", "host": self.options.host, "inner": self.inner}
        try:
            out["identity"] = identity = self.identity()
        except HarnessError as exc:
            out["error"] = str(exc)
            return out
        mismatch = " (harness version differs: allowed by allow_version_mismatch)" if identity["version_mismatch"] \
            else ""
        out["note"] = (f"measured on {self.options.host} ({identity['node']}: {identity['system']} "
                       f"{identity['release']}, {identity['machine']}, {identity['cpus']} CPUs, Python "
                       f"{identity['python']}, fastvlm-harness {identity['harness']}{mismatch}) with {self.inner} "
                       "over ssh")
        return out

    @classmethod
    def preflight(cls, options: dict[str, Any] | None) -> tuple[list[str], list[str]]:
        """(problems that stop the run, notes): no host or no ssh client stop it; a host that cannot
        be reached now is a note — this runtime's suites are recorded unavailable, the run goes on."""
        import shutil

        from harness.errors import HarnessError

        name = f"remote-{cls.inner}"
        if not options or not options.get("host"):
            return [f"runtime '{name}' needs runtime_options.{name}.host (and usually user, python)"], []
        if shutil.which("ssh") is None:
            return [f"runtime '{name}' needs the 'ssh' client on PATH (openssh-client)"], []
        try:
            checked_identity(RemoteOptions.model_validate(options))
        except HarnessError as exc:
            return [], [f"{exc} (its suites will be recorded unavailable)"]
        return [], []


def remote_runtime(inner: str) -> type[Remote]:
    cls = type(f"Remote_{inner.replace('-', '_')}", (Remote,), {"inner": inner, "accepts": RUNTIMES.get(inner).accepts,
                                                              "__module__": __name__})
    RUNTIMES.register(f"remote-{inner}", f"{inner} on another machine over SSH (runtime_options.remote-{inner}: "
                                         "host, user, python, ...)")(cls)
    return cls


REMOTES = {inner: remote_runtime(inner) for inner in INNER}
