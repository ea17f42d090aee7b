"""LiteRT (TFLite interpreter, XNNPACK CPU delegate) over a variant's `exports/tflite/` graphs,
driven by the shared generation loop (`harness.exporting.loop`) through
`harness.exporting.litert.LiteRTBackend`.

The graphs have static shapes (batch 1, prefill chunks of T tokens, a fixed cache), so the
backend runs each row of a batch on its own: prompt tokens but the last are written into the
cache in chunks of T by `prefill_<T>`, the last prompt token and every generated one go through
`decode`, which returns the logits (LiteRT-LM's split). Integer (full-int8) graphs are fed through
their tensors' scale/zero point. Threads follow torch's setting (`HARNESS_THREADS`), as the other
runtimes do; `HARNESS_LITERT_DELEGATE=none` turns the default XNNPACK delegate off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import RuntimeBackendError, require
from harness.registries import RUNTIMES

DELEGATES = ("xnnpack", "none")


@RUNTIMES.register("litert", "LiteRT interpreter (XNNPACK CPU delegate) over exports/tflite: vision, embedder, "
                             "KV-cache decoder")
class LiteRT:
    accepts: ClassVar[tuple[str, ...]] = ("tflite",)
    #: (module, extra) the runtime imports: `harness run` checks they are installed before it starts.
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("ai_edge_litert", "tflite"),)
    preload_modules: ClassVar[tuple[str, ...]] = ("ai_edge_litert.interpreter", "numpy")

    @staticmethod
    def _delegate() -> str:
        delegate = os.environ.get("HARNESS_LITERT_DELEGATE", "xnnpack")
        if delegate not in DELEGATES:
            raise RuntimeBackendError(f"HARNESS_LITERT_DELEGATE={delegate!r}: use one of {', '.join(DELEGATES)}")
        return delegate

    def load(self, artifact: Path) -> Any:
        require("ai_edge_litert", "tflite", "runtime litert")
        import torch

        from harness.exporting import GENERATION_GRAPHS, generation_graphs
        from harness.exporting.litert import LiteRTBackend, open_interpreter
        from harness.exporting.loop import export_session

        folder, manifest, graphs = generation_graphs(artifact, "tflite", "export-tflite")
        threads, delegate = torch.get_num_threads(), self._delegate()
        interpreters = {name: open_interpreter(folder / graphs[name], threads, delegate)
                        for name in GENERATION_GRAPHS}
        return export_session(folder, "tflite", artifact.name, manifest,
                              lambda facts: LiteRTBackend(interpreters, facts))

    def info(self) -> dict[str, Any]:
        import torch

        from harness.environment import package_version

        try:
            require("ai_edge_litert", "tflite", "runtime litert")
        except Exception as exc:  # noqa: BLE001 - info must never break a run
            return {"runtime": "litert", "error": str(exc)}
        version = package_version("ai-edge-litert")
        delegate = os.environ.get("HARNESS_LITERT_DELEGATE", "xnnpack")
        return {"runtime": "litert", "ai_edge_litert": version, "num_threads": torch.get_num_threads(),
                "delegate": "XNNPACK (default CPU delegate)" if delegate == "xnnpack" else "none (builtin kernels)",
                "batch": "rows run one at a time (static batch-1 graphs)"}
