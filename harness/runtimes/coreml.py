"""Core ML over a variant's `exports/coreml/` packages, driven by the shared generation loop.

Core ML prediction exists only on macOS (coremltools: "Model prediction is only supported on
macOS"). Elsewhere `load()` raises `RuntimeUnavailable`: the worker records the session suites as
unavailable with that reason, while the size suite still measures the packages (whose specs the
export step validated). On macOS the backend below runs real `MLModel.predict` calls; it cannot
be executed on the Linux machines this project is tested on (see docs/export.md).

The exported decoder is stateless (no KV cache, see harness/exporting/coreml.py), so the backend
keeps each row's embeddings and recomputes the whole prefix (padded to `sequence_length`) per
token; `HARNESS_COREML_UNITS` picks the compute units (ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import RuntimeBackendError, RuntimeUnavailable, first_line, require
from harness.registries import RUNTIMES

UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")
NEEDS_MACOS = ("needs macOS: Core ML prediction is only supported on macOS; the spec was validated and the "
               "size measured")


class CoremlBackend:
    """The generation loop's backend protocol (`harness.exporting.loop`) over three MLModels (macOS only)."""

    def __init__(self, models: dict[str, Any], facts: dict[str, Any]) -> None:
        import numpy as np

        self.models = models
        self.length = int(facts["sequence_length"])
        self.mask_value = float(facts["mask_value"])
        # the stateless decoder always sees the full static length: causal mask and positions are fixed
        self.causal_mask = np.triu(np.full((self.length, self.length), self.mask_value, np.float32), 1)[None, None]
        self.positions = np.arange(self.length, dtype=np.int32)[None]

    def encode(self, pixel_values: Any) -> Any:
        import numpy as np

        rows = [self.models["vision"].predict({"pixel_values": pixel_values[i:i + 1]})["features"]
                for i in range(pixel_values.shape[0])]
        return np.concatenate(rows, axis=0).astype(np.float32)

    def embed(self, input_ids: Any) -> Any:
        import numpy as np

        rows = []
        for ids in np.asarray(input_ids, dtype=np.int32):
            parts = []
            for start in range(0, ids.shape[0], self.length):
                piece = ids[start:start + self.length]
                padded = np.zeros((1, self.length), np.int32)
                padded[0, :len(piece)] = piece
                parts.append(self.models["embed"].predict({"token_ids": padded})["embeddings"][0, :len(piece)])
            rows.append(np.concatenate(parts, axis=0))
        return np.stack(rows).astype(np.float32)

    def _logits(self, sequence: Any) -> Any:
        import numpy as np

        used = sequence.shape[0]
        if used > self.length:
            raise RuntimeBackendError(f"Core ML decoder takes {self.length} tokens; this generation needs {used}: "
                                      "re-export with a larger sequence_length")
        embeds = np.zeros((1, self.length, sequence.shape[1]), np.float32)
        embeds[0, :used] = sequence
        out = self.models["decoder"].predict({"embeddings": embeds, "mask": self.causal_mask,
                                              "position_ids": self.positions})
        return np.asarray(out["logits"], dtype=np.float32)[0, used - 1]

    def prefill(self, embeds: Any, mask: Any, positions: Any) -> tuple[Any, list[Any]]:
        import numpy as np

        past = [embeds[row][np.asarray(mask[row]) == 1] for row in range(embeds.shape[0])]
        return np.stack([self._logits(seq) for seq in past]), past

    def decode(self, embeds: Any, mask: Any, positions: Any, past: list[Any]) -> tuple[Any, list[Any]]:
        import numpy as np

        past = [np.concatenate([seq, embeds[row]], axis=0) for row, seq in enumerate(past)]
        return np.stack([self._logits(seq) for seq in past]), past


@RUNTIMES.register("coreml", "Core ML (macOS only; on Linux recorded as unavailable, size still measured) "
                             "over exports/coreml")
class Coreml:
    accepts: ClassVar[tuple[str, ...]] = ("coreml",)
    #: (module, extra) the runtime imports: `harness run` checks they are installed before it starts.
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("coremltools", "coreml"),)

    def load(self, artifact: Path) -> Any:
        ct = require("coremltools", "coreml", "runtime coreml")
        from harness.exporting import GENERATION_GRAPHS, generation_graphs, read_export

        read_export(artifact, "coreml")  # a missing export is its own error, also off macOS
        if sys.platform != "darwin":
            raise RuntimeUnavailable(NEEDS_MACOS)
        folder, manifest, graphs = generation_graphs(artifact, "coreml", "export-coreml")
        units = os.environ.get("HARNESS_COREML_UNITS", "ALL")
        if units not in UNITS:
            raise RuntimeBackendError(f"HARNESS_COREML_UNITS={units!r}: use one of {', '.join(UNITS)}")
        from harness.exporting.loop import export_session

        models = {}
        for name in GENERATION_GRAPHS:
            try:
                models[name] = ct.models.MLModel(str(folder / graphs[name]),
                                                 compute_units=getattr(ct.ComputeUnit, units))
            except Exception as exc:  # noqa: BLE001 - Core ML compile errors are untyped
                first = first_line(exc)
                raise RuntimeBackendError(f"Core ML cannot load '{graphs[name]}': {first}") from None
        return export_session(folder, "coreml", artifact.name, manifest, lambda facts: CoremlBackend(models, facts))

    def info(self) -> dict[str, Any]:
        import platform

        from harness.environment import package_version

        return {"runtime": "coreml", "coremltools": package_version("coremltools"), "platform": platform.platform(),
                "compute_units": os.environ.get("HARNESS_COREML_UNITS", "ALL"),
                "prediction": "available" if sys.platform == "darwin" else NEEDS_MACOS}
