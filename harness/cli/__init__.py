"""The `harness` command line (entry point `harness.cli:app`)."""

from harness.cli import converting, deploy, device, reading, reference, running, searching  # noqa: F401 - each registers its commands on `app`
from harness.cli.app import app

__all__ = ["app"]
