"""A remote runtime's settings: `runtime_options: {remote-<runtime>: {host: ..., ...}}` in the recipe,
validated by `RemoteOptions` (the runtime class declares it as its `Config`)."""

from __future__ import annotations

from pydantic import Field

from harness.spec.base import Strict


class RemoteOptions(Strict):
    """Which host, how to reach it, and the harness installed there (docs/devices.md, remote hosts)."""

    host: str = Field(min_length=1, description="the host name or address sshd listens on")
    port: int = Field(22, ge=1, le=65535)
    user: str | None = Field(None, min_length=1, description="unset: ssh's default (your user, or ~/.ssh/config)")
    identity_file: str | None = Field(None, min_length=1, description="the private key; unset: ssh's defaults")
    python: str = Field("python3", min_length=1, description="the Python ON THE HOST that has fastvlm-harness "
                                                             "installed (e.g. ~/fastvlm-harness/.venv/bin/python)")
    work_dir: str = Field("~/.cache/fastvlm-harness-remote", min_length=1,
                          description="folder on the host the variant's artifact is copied into")
    allow_version_mismatch: bool = Field(False, description="measure even when the host's harness version differs "
                                                            "from this one (recorded in the result)")
    ssh_options: list[str] = Field(default_factory=list, description="extra `ssh -o` options, e.g. "
                                                                     "StrictHostKeyChecking=accept-new")
    connect_timeout_s: int = Field(10, ge=1)
    timeout_s: float = Field(1800, gt=0, description="longest one remote command may take")
