"""The ssh commands the remote runtimes run, each failure one line: host unreachable, auth refused,
a command that fails there. Files go over the same connection (`tar` piped through ssh), so the
remote host needs nothing but sshd, tar and the harness's Python."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

from harness.errors import RuntimeBackendError, RuntimeUnavailable


class Ssh:
    def __init__(self, options: Any) -> None:
        self.options = options
        self.target = f"{options.user}@{options.host}" if options.user else options.host

    def argv(self) -> list[str]:
        opts = self.options
        argv = ["ssh", "-p", str(opts.port), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={opts.connect_timeout_s}"]
        if opts.identity_file:
            argv += ["-i", str(Path(opts.identity_file).expanduser()), "-o", "IdentitiesOnly=yes"]
        for option in opts.ssh_options:
            argv += ["-o", option]
        return [*argv, self.target]

    def run(self, command: str, stdin: bytes | None = None, timeout_s: float | None = None) -> str:
        """stdout of `command` on the host; RuntimeUnavailable when the host cannot be reached or
        refuses us, RuntimeBackendError when the command fails there."""
        try:
            done = subprocess.run([*self.argv(), command], input=stdin, capture_output=True,
                                  timeout=timeout_s or self.options.timeout_s, check=False)
        except FileNotFoundError:
            raise RuntimeUnavailable("remote runtime needs the 'ssh' client on PATH (openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise RuntimeBackendError(f"ssh {self.target}: '{command[:60]}' did not finish within "
                                      f"{timeout_s or self.options.timeout_s:.0f} s") from None
        err = done.stderr.decode(errors="replace").strip()
        if done.returncode == 255:  # ssh's own failure: connection or authentication
            line = err.splitlines()[-1] if err else "ssh failed"
            hint = "auth refused: add this machine's key to the host's authorized_keys or set identity_file" \
                if "Permission denied" in line else "host unreachable: check host, port and that sshd runs"
            raise RuntimeUnavailable(f"ssh {self.target}:{self.options.port}: {line} ({hint})")
        if done.returncode != 0:
            last = err.splitlines()[-1] if err else f"exit {done.returncode}"
            raise RuntimeBackendError(f"ssh {self.target}: '{command[:80]}' failed: {last}")
        return done.stdout.decode(errors="replace")

    def put_folder(self, local: Path, remote_parent: str) -> None:
        """Copy `local` (a folder) into `remote_parent/<its name>` through one tar stream."""
        tar = subprocess.run(["tar", "-C", str(local.parent), "-cf", "-", local.name], capture_output=True,
                             check=False)
        if tar.returncode != 0:
            raise RuntimeBackendError(f"cannot pack '{local}': {tar.stderr.decode(errors='replace').strip()}")
        parent = shlex.quote(remote_parent)
        self.run(f"mkdir -p {parent} && tar -C {parent} -xf -", stdin=tar.stdout)
