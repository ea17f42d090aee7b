"""An initialisation for `random:<shape>` whose activations look like a trained model's.

Default HF/timm init (std 0.02, layer-scale 1e-5) built straight in inference mode folds the
RepMixer identity into a random conv, so the tower's activations shrink to subnormal or zero by
stage 2 and every convolution then runs on a data-dependent slow path (measured 22x slower than
real weights). Instead the tower is built in *train form*, given fan-in weights, per-channel
layer-scales in [0.1, 0.5] and BatchNorm statistics calibrated on one seeded random image (so each
BatchNorm normalises its real input to unit variance), and then reparameterised into the
inference-mode layout released checkpoints have (ConvFFN BatchNorms left unfolded, as Apple's
are). The LLM and projector get fan-in linear weights, residual output projections scaled by
1/sqrt(2 x layers) so the residual stream stays O(1). Everything is drawn from one seeded
generator: the same seed gives the same weights.
"""

from __future__ import annotations

import math
from typing import Any

import torch

LAYER_SCALE_RANGE = (0.1, 0.5)
#: Decoder projections that write into the residual stream.
RESIDUAL_OUT = ("o_proj", "down_proj")
NORMS = (torch.nn.BatchNorm2d, torch.nn.LayerNorm, torch.nn.GroupNorm)


def init_vision_tower(tower: torch.nn.Module, generator: torch.Generator, calibration_size: int) -> None:
    """Fan-in weights, layer-scales, identity norm affines, then BatchNorm stats from one image."""
    from timm.models.fastvit import LayerScale2d

    with torch.no_grad():
        for module in tower.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                _fan_in(module, generator)
            elif isinstance(module, LayerScale2d):
                low, high = LAYER_SCALE_RANGE
                module.gamma.copy_(low + (high - low) * torch.rand(module.gamma.shape, generator=generator))
            elif isinstance(module, NORMS) and module.weight is not None:
                module.weight.fill_(1.0)
                module.bias.zero_()
    calibrate_batchnorms(tower, generator, calibration_size)


def calibrate_batchnorms(tower: torch.nn.Module, generator: torch.Generator, size: int) -> None:
    """Running stats = the statistics of each BatchNorm's own input on one seeded random image
    (cumulative average, train-mode forward without gradients), so eval-mode BNs normalise."""
    norms = [m for m in tower.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    image = torch.rand(2, 3, size, size, generator=generator)
    tower.train()
    with torch.no_grad():
        tower.forward_features(image)
    tower.eval()
    for bn in norms:
        bn.momentum = 0.1


def init_language(model: Any, generator: torch.Generator) -> None:
    """Fan-in Linear weights in the projector and decoder (residual outputs scaled down), zero biases."""
    layers = model.config.text_config.num_hidden_layers
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear) or name.startswith("model.vision_tower"):
                continue
            scale = 1 / math.sqrt(2 * layers) if name.rsplit(".", 1)[-1] in RESIDUAL_OUT else 1.0
            _fan_in(module, generator, scale)


def _fan_in(module: torch.nn.Module, generator: torch.Generator, scale: float = 1.0) -> None:
    """Normal weights with std scale/sqrt(fan_in) (fan_in = in channels per group x kernel), zero bias."""
    weight = module.weight
    fan_in = weight[0].numel()
    weight.copy_(torch.randn(weight.shape, generator=generator) * (scale / math.sqrt(fan_in)))
    if module.bias is not None:
        module.bias.zero_()
