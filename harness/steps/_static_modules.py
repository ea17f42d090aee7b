"""The modules of step `static-int8` (`static_quant.py`): the converted graph that stands in for a
component, and the vision tower seen as a tensor → tensor function for `torch.export`.

A separate module so that it can import torch at its top: `static_quant.py` is imported when the
step registry is discovered (validating a recipe imports no torch) and imports this one only when
the step runs.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.models.timm_wrapper.modeling_timm_wrapper import TimmWrapperModelOutput


class StaticInt8Graph(torch.nn.Module):
    """A converted PT2E graph standing in for a component; vision returns the tower's output type."""

    def __init__(self, graph: Any, vision: bool) -> None:
        super().__init__()
        self.graph = graph
        self.vision = vision

    def train(self, mode: bool = True) -> Any:
        """Exported graphs refuse `.train()`/`.eval()`; the converted graph is inference-only."""
        self.training = mode
        return self

    def forward(self, pixel_values: Any, *args: Any, **kwargs: Any) -> Any:
        out = self.graph(pixel_values)
        return TimmWrapperModelOutput(last_hidden_state=out) if self.vision else out


class VisionCore(torch.nn.Module):
    """The vision tower as a tensor → tensor function (what get_image_features reads)."""

    def __init__(self, tower: Any) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, pixel_values: Any) -> Any:
        return self.tower(pixel_values, return_dict=True).last_hidden_state
