"""ExecuTorch (Python runtime, XNNPACK delegate) over a variant's `exports/pte/` programs, driven
by the shared generation loop (`harness.exporting.loop`) through
`harness.exporting.executorch.ExecuTorchBackend`.

The programs have static shapes (batch 1, prefill chunks of T tokens, a fixed cache), so rows of
a batch run one at a time, as on LiteRT: prompt tokens but the last are written into the cache by
the decoder's `prefill` method in chunks of T, the last prompt token and every generated one go
through `decode`, which returns the logits. XNNPACK's thread pool follows torch's setting
(`HARNESS_THREADS`), as the other runtimes do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from harness.errors import require
from harness.registries import RUNTIMES


@RUNTIMES.register("executorch", "ExecuTorch Python runtime (XNNPACK delegate) over exports/pte: vision, embedder, "
                                 "static-KV-cache decoder")
class ExecuTorch:
    accepts: ClassVar[tuple[str, ...]] = ("pte",)
    #: (module, extra) the runtime imports: `harness run` checks they are installed before it starts.
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("executorch", "executorch"),)
    preload_modules: ClassVar[tuple[str, ...]] = ("executorch.runtime", "numpy")

    def load(self, artifact: Path) -> Any:
        require("executorch.runtime", "executorch", "runtime executorch")

        from harness.exporting import GENERATION_GRAPHS, generation_graphs
        from harness.exporting.executorch import ExecuTorchBackend, open_program
        from harness.exporting.loop import export_session

        folder, manifest, graphs = generation_graphs(artifact, "pte", "export-executorch")
        _set_threads()
        programs = {name: open_program(folder / graphs[name]) for name in GENERATION_GRAPHS}
        return export_session(folder, "pte", artifact.name, manifest, lambda facts: ExecuTorchBackend(programs, facts))

    def info(self) -> dict[str, Any]:
        from harness.environment import package_version

        try:
            require("executorch.runtime", "executorch", "runtime executorch")
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime

            backends = Runtime.get().backend_registry.registered_backend_names
            threads = portable_lib._threadpool_get_thread_count()
        except Exception as exc:  # noqa: BLE001 - info must never break a run
            return {"runtime": "executorch", "error": str(exc)}
        return {"runtime": "executorch", "executorch": package_version("executorch"), "num_threads": threads,
                "delegate": "XNNPACK" if "XnnpackBackend" in backends else "none (portable kernels)",
                "backends": sorted(backends), "batch": "rows run one at a time (static batch-1 programs)"}


def _set_threads() -> None:
    """XNNPACK's thread pool to torch's thread count (the harness's one thread setting)."""
    import torch
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != torch.get_num_threads():
        portable_lib._unsafe_reset_threadpool(torch.get_num_threads())
