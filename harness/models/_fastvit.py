"""FastViT reparameterisation that works on train-form *and* inference-mode towers.

timm's `reparameterize_model` calls every module's `reparameterize()` unconditionally; on a tower
built with `inference_mode: true` (Apple's released weights, `random:fastvlm-*`) the training
branches do not exist and `ReparamLargeKernelConv` / `RepConditionalPosEnc` raise AttributeError.
Here a module is reparameterised only while it still has its training branches: every FastViT
block that can be reparameterised keeps its fused conv in `reparam_conv`, which is None (or absent)
until it is fused. The ConvFFN depthwise conv + BatchNorm pair is never fused by timm (and was never
fused in Apple's weights), so it is folded here with `fuse_conv_bn_eval` in both forms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ReparamCounts:
    """What one pass changed: modules fused now, modules that were fused already, BatchNorms folded."""

    reparameterized: int = 0
    already_fused: int = 0
    folded_bn: int = 0


def has_training_branches(module: torch.nn.Module) -> bool:
    """A reparameterisable module that is still in train form: its fused conv is not built yet."""
    return getattr(module, "reparam_conv", None) is None


def reparameterize_tower(tower: torch.nn.Module, fold_convffn_bn: bool = True) -> ReparamCounts:
    """Fuse what is still unfused (parents before children, as timm does), then fold ConvFFN BNs."""
    counts = ReparamCounts()
    tower.eval()
    with torch.no_grad():
        _walk(tower, counts)
        if fold_convffn_bn:
            counts.folded_bn = fold_convffn_batchnorms(tower)
    return counts


def _walk(parent: torch.nn.Module, counts: ReparamCounts) -> None:
    for _, child in list(parent.named_children()):
        if hasattr(child, "reparameterize"):
            if has_training_branches(child):
                child.reparameterize()
                counts.reparameterized += 1
            else:
                counts.already_fused += 1
        _walk(child, counts)


def fold_convffn_batchnorms(tower: torch.nn.Module) -> int:
    """Fold each ConvFFN's BatchNorm into its 7x7 depthwise conv; returns how many were folded."""
    from timm.models.fastvit import ConvMlp
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for module in tower.modules():
        if isinstance(module, ConvMlp) and isinstance(module.conv.bn, torch.nn.BatchNorm2d):
            bn = module.conv.bn
            module.conv.conv = fuse_conv_bn_eval(module.conv.conv, bn)
            # timm's BatchNormAct2d carries its activation (and drop) inside the norm: keep them.
            module.conv.bn = _after_bn(bn)
            folded += 1
    return folded


def _after_bn(bn: torch.nn.Module) -> torch.nn.Module:
    """What must still run after a folded BatchNorm: timm's BatchNormAct2d holds drop + act."""
    parts = [m for name in ("drop", "act") if not isinstance(m := getattr(bn, name, torch.nn.Identity()),
                                                               torch.nn.Identity)]
    if not parts:
        return torch.nn.Identity()
    return parts[0] if len(parts) == 1 else torch.nn.Sequential(*parts)
