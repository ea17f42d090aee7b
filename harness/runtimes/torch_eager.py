"""PyTorch eager execution of a saved torch variant (the reference runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from harness.registries import RUNTIMES


@RUNTIMES.register("torch-eager", "PyTorch eager on CPU; the reference every other runtime is compared to")
class TorchEager:
    accepts: ClassVar[tuple[str, ...]] = ("torch",)
    #: (module, extra) the runtime imports: `harness run` checks they are installed before it starts.
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()

    def load(self, artifact: Path) -> Any:
        from harness.build.artifact import load_variant

        return load_variant(artifact)

    def info(self) -> dict[str, Any]:
        import torch

        return {"runtime": "torch-eager", "torch": torch.__version__,
                "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()}
