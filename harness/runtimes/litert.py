"""LiteRT (TFLite interpreter, XNNPACK CPU delegate) over a variant's `exports/tflite/` graphs,
driven by the shared generation loop (`_loop.py`).

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


class LiteRTBackend:
    """The `_loop` backend protocol over the vision, embed and decoder signatures."""

    def __init__(self, interpreters: dict[str, Any], facts: dict[str, Any]) -> None:
        from harness.exporting.litert import Signature

        sig = facts["signatures"]
        self.facts = facts
        self.vision = Signature(interpreters["vision"], sig["vision"])
        self.embed_prefill = Signature(interpreters["embed"], sig["embed_prefill"])
        self.embed_decode = Signature(interpreters["embed"], sig["embed_decode"])
        self.prefill_sig = Signature(interpreters["decoder"], sig["prefill"])
        self.decode_sig = Signature(interpreters["decoder"], sig["decode"])
        self.chunk = int(facts["prefill_length"])
        self.slots = int(facts["cache_length"])
        self.kv_names = sorted(k for k in self.decode_sig.inputs if k.startswith("kv_cache"))

    # --- encoder and embeddings ---------------------------------------------------------
    def encode(self, pixel_values: Any) -> Any:
        import numpy as np

        rows = [self.vision(pixel_values=pixel_values[i:i + 1])["features"] for i in range(pixel_values.shape[0])]
        return np.concatenate(rows, axis=0).astype(np.float32)

    def embed(self, input_ids: Any) -> Any:
        import numpy as np

        rows = []
        for ids in np.asarray(input_ids, dtype=np.int32):
            if ids.shape[0] == 1:
                rows.append(self.embed_decode(token_ids=ids[None])["embeddings"][0])
                continue
            parts = []
            for start in range(0, ids.shape[0], self.chunk):
                piece = ids[start:start + self.chunk]
                padded = np.zeros((1, self.chunk), np.int32)
                padded[0, :len(piece)] = piece
                parts.append(self.embed_prefill(token_ids=padded)["embeddings"][0, :len(piece)])
            rows.append(np.concatenate(parts, axis=0))
        return np.stack(rows).astype(np.float32)

    # --- decoder ------------------------------------------------------------------------
    def _mask(self, positions: Any) -> Any:
        import numpy as np

        mask = np.full((1, 1, len(positions), self.slots), self.facts["mask_value"], np.float32)
        for row, pos in enumerate(positions):
            mask[0, 0, row, :int(pos) + 1] = 0.0
        return mask

    def _decode_one(self, embed: Any, pos: int, kv: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        import numpy as np

        if pos >= self.slots:
            raise RuntimeBackendError(f"LiteRT decoder cache is full: position {pos} needs more than the "
                                      f"{self.slots} slots exported; re-export with a larger cache_length")
        out = self.decode_sig(embeddings=embed[None, None].astype(np.float32),
                              input_pos=np.array([pos], np.int32), mask=self._mask([pos]), **kv)
        return out["logits"][0, -1], {k: out[k] for k in self.kv_names}

    def prefill(self, embeds: Any, mask: Any, positions: Any) -> tuple[Any, list[dict[str, Any]]]:
        import numpy as np

        logits, past = [], []
        for row in range(embeds.shape[0]):
            real = embeds[row][np.asarray(mask[row]) == 1]
            length = real.shape[0]
            chunks = -(-(length - 1) // self.chunk)
            if length == 0 or chunks * self.chunk > self.slots or length >= self.slots:
                raise RuntimeBackendError(f"a prompt of {length} tokens does not fit the LiteRT export (cache "
                                          f"{self.slots} slots, prefill chunks of {self.chunk}); re-export with a "
                                          "larger cache_length")
            kv = {k: np.zeros(self.decode_sig.inputs[k]["shape"], np.float32) for k in self.kv_names}
            for index in range(chunks):
                start = index * self.chunk
                piece = real[start:min(start + self.chunk, length - 1)]
                padded = np.zeros((1, self.chunk, real.shape[1]), np.float32)
                padded[0, :len(piece)] = piece
                pos = np.arange(start, start + self.chunk, dtype=np.int32)
                out = self.prefill_sig(embeddings=padded, input_pos=pos,
                                       mask=self._mask(np.minimum(pos, length - 2)), **kv)
                kv = {k: out[k] for k in self.kv_names}
            row_logits, kv = self._decode_one(real[length - 1], length - 1, kv)
            logits.append(row_logits)
            past.append(kv)
        return np.stack(logits).astype(np.float32), past

    def decode(self, embeds: Any, mask: Any, positions: Any, past: list[dict[str, Any]]) -> tuple[Any, list[Any]]:
        import numpy as np

        logits, new_past = [], []
        for row, kv in enumerate(past):
            row_logits, kv = self._decode_one(embeds[row, 0], int(positions[row, 0]), kv)
            logits.append(row_logits)
            new_past.append(kv)
        return np.stack(logits).astype(np.float32), new_past

    @staticmethod
    def past_nbytes(past: list[dict[str, Any]]) -> int:
        return int(sum(v.nbytes for kv in past for v in kv.values()))


@RUNTIMES.register("litert", "LiteRT interpreter (XNNPACK CPU delegate) over exports/tflite: vision, embedder, "
                             "KV-cache decoder")
class LiteRT:
    accepts: ClassVar[tuple[str, ...]] = ("tflite",)
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
        from transformers import AutoProcessor

        from harness.exporting import GENERATION_GRAPHS, generation_graphs
        from harness.exporting.litert import open_interpreter
        from harness.runtimes._loop import LoopSession

        folder, manifest, graphs = generation_graphs(artifact, "tflite", "export-tflite")
        threads, delegate = torch.get_num_threads(), self._delegate()
        interpreters = {name: open_interpreter(folder / graphs[name], threads, delegate)
                        for name in GENERATION_GRAPHS}
        try:
            processor = AutoProcessor.from_pretrained(str(folder))
        except (OSError, ValueError) as exc:
            raise RuntimeBackendError(f"tokenizer/processor assets of the tflite export are unusable: {exc}") from None
        facts = manifest["model"]
        try:
            backend = LiteRTBackend(interpreters, facts)
        except (KeyError, ValueError) as exc:
            raise RuntimeBackendError(f"tflite export of '{artifact.name}' lacks the signature {exc}; "
                                      "rebuild the variant") from None
        return LoopSession(backend, processor, facts["image_token_id"], facts["eos_token_ids"])

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
