"""The words a recipe uses for parts of a model and formats of an artifact (DESIGN.md "Words").

Defined here, in the pure-data layer, so the recipe parser can check them without importing any
step; the steps import them from here.
"""

from __future__ import annotations

from typing import Literal

Component = Literal["vision", "projector", "llm"]
COMPONENTS: tuple[str, ...] = ("vision", "projector", "llm")
#: Artifact formats. A variant always keeps its torch weights; an export step *adds* a format
#: (files under `<artifact>/exports/<fmt>/`), a step that consumes and produces the same
#: non-torch format rewrites that export in place (e.g. `ort-quant`).
FORMATS: tuple[str, ...] = ("torch", "onnx", "tflite", "coreml", "mlx", "pte")
