"""What a suite gets when it runs on one variant × runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class SuiteContext:
    runtime_name: str
    runtime: Any
    artifact: Path
    work_dir: Path
    recipe_dir: Path | None = None
    random_weights: bool = False
    #: Content hash of the variant (harness.run.worker.variant_key) and the cache root: the response
    #: cache's key ingredient and location; `use_cache` False (--no-cache) bypasses it.
    variant_key: str | None = None
    cache_dir: Path | None = None
    use_cache: bool = False
    _session: Any = field(default=None, repr=False)

    def session(self) -> Any:
        """The artifact loaded in this runtime (loaded once, shared by suites)."""
        if self._session is None:
            self._session = self.runtime.load(self.artifact)
        return self._session

    def adopt(self, session: Any) -> None:
        self._session = session
