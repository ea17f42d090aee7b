"""ONNX Runtime (CPU) over a variant's `exports/onnx/` graphs: one InferenceSession per graph
(vision, embed, decoder), driven by the shared generation loop (`harness.exporting.loop`).

Session options are recorded in `info()`: intra-op threads follow torch's thread setting (the
same `HARNESS_THREADS` the torch runtime uses, so the two are compared on equal threads),
inter-op threads 1, sequential execution, and the graph optimisation level (default: all;
`HARNESS_ORT_OPT` = disable | basic | extended | all).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import RuntimeBackendError, first_line, require
from harness.registries import RUNTIMES

LEVELS = ("disable", "basic", "extended", "all")


class OrtBackend:
    """The generation loop's backend protocol (`harness.exporting.loop`) over three InferenceSessions."""

    def __init__(self, sessions: dict[str, Any], facts: dict[str, Any]) -> None:
        from harness.exporting.onnx import decoder_names

        self.vision, self.embed_session, self.decoder = sessions["vision"], sessions["embed"], sessions["decoder"]
        self.facts = facts
        self.past_names, _ = decoder_names(int(facts["num_layers"]))

    def encode(self, pixel_values: Any) -> Any:
        return self.vision.run(None, {"pixel_values": pixel_values})[0]

    def embed(self, input_ids: Any) -> Any:
        return self.embed_session.run(None, {"input_ids": input_ids})[0]

    def _run(self, embeds: Any, mask: Any, positions: Any, past: list[Any]) -> tuple[Any, list[Any]]:
        feed = {"inputs_embeds": embeds, "attention_mask": mask, "position_ids": positions,
                **dict(zip(self.past_names, past))}
        outputs = self.decoder.run(None, feed)
        return outputs[0], outputs[1:]

    def prefill(self, embeds: Any, mask: Any, positions: Any) -> tuple[Any, list[Any]]:
        import numpy as np

        empty = np.zeros((embeds.shape[0], int(self.facts["kv_heads"]), 0, int(self.facts["head_dim"])),
                         dtype=np.float32)
        return self._run(embeds, mask, positions, [empty] * len(self.past_names))

    def decode(self, embeds: Any, mask: Any, positions: Any, past: list[Any]) -> tuple[Any, list[Any]]:
        return self._run(embeds, mask, positions, past)

    @staticmethod
    def past_nbytes(past: list[Any]) -> int:
        return int(sum(p.nbytes for p in past))


@RUNTIMES.register("onnxruntime", "ONNX Runtime (CPU EP) over exports/onnx: vision, embed and KV-cache decoder graphs")
class OnnxRuntime:
    accepts: ClassVar[tuple[str, ...]] = ("onnx",)
    #: (module, extra) the runtime imports: `harness run` checks they are installed before it starts.
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("onnxruntime", "onnx"),)
    preload_modules: ClassVar[tuple[str, ...]] = ("onnxruntime", "numpy")

    def _options(self) -> Any:
        ort = require("onnxruntime", "onnx", "runtime onnxruntime")
        import torch

        level = os.environ.get("HARNESS_ORT_OPT", "all")
        if level not in LEVELS:
            raise RuntimeBackendError(f"HARNESS_ORT_OPT={level!r}: use one of {', '.join(LEVELS)}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
        options.log_severity_level = 3
        return options

    def load(self, artifact: Path) -> Any:
        ort = require("onnxruntime", "onnx", "runtime onnxruntime")

        from harness.exporting import GENERATION_GRAPHS, generation_graphs
        from harness.exporting.loop import export_session

        folder, manifest, graphs = generation_graphs(artifact, "onnx", "export-onnx")
        options = self._options()
        sessions = {}
        for name in GENERATION_GRAPHS:
            path = folder / graphs[name]
            if not path.is_file():
                raise RuntimeBackendError(f"onnx graph '{path}' is missing; rebuild the variant")
            try:
                sessions[name] = ort.InferenceSession(str(path), sess_options=options,
                                                      providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors for bad files
                first = first_line(exc)
                raise RuntimeBackendError(f"onnxruntime cannot load '{path.name}' of '{artifact.name}' "
                                          f"(corrupt or unsupported graph): {first}") from None
        return export_session(folder, "onnx", artifact.name, manifest, lambda facts: OrtBackend(sessions, facts))

    def info(self) -> dict[str, Any]:
        import torch

        try:
            ort = require("onnxruntime", "onnx", "runtime onnxruntime")
        except Exception as exc:  # noqa: BLE001 - info must never break a run
            return {"runtime": "onnxruntime", "error": str(exc)}
        return {"runtime": "onnxruntime", "onnxruntime": ort.__version__, "providers": ["CPUExecutionProvider"],
                "intra_op_threads": torch.get_num_threads(), "inter_op_threads": 1, "execution_mode": "sequential",
                "graph_optimization_level": os.environ.get("HARNESS_ORT_OPT", "all")}
