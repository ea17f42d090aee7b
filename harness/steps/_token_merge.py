"""The module of step `token-merge` (`token_merge.py`): pooling or ToMe on the encoder's token grid.

A separate module so that it can import torch at its top: `token_merge.py` is imported when the
step registry is discovered (validating a recipe imports no torch) and imports this one only when
the step runs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812


def tome(tokens: Any, r: int) -> Any:
    """Bipartite soft matching, order-preserving: merge the r most similar A→B pairs (size-weighted).

    Tokens alternate into sets A (even) and B (odd); each A token picks its most cosine-similar B
    token, the r best-matched A tokens are averaged into their B partner and dropped. Survivors
    keep their original order, so the LLM sees the same raster order with gaps.
    """
    batch, count, channels = tokens.shape
    a, b = tokens[:, ::2], tokens[:, 1::2]
    normed = tokens / tokens.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    scores = normed[:, ::2] @ normed[:, 1::2].transpose(1, 2)
    best, partner = scores.max(dim=-1)
    order = best.argsort(dim=-1, descending=True, stable=True)
    src = order[:, :r]
    dst = partner.gather(1, src)
    moved = a.gather(1, src[..., None].expand(-1, -1, channels))
    sums = b.clone().scatter_add_(1, dst[..., None].expand(-1, -1, channels), moved)
    sizes = torch.ones(batch, b.shape[1], 1, dtype=tokens.dtype, device=tokens.device)
    sizes = sizes.scatter_add(1, dst[..., None], torch.ones(batch, r, 1, dtype=tokens.dtype, device=tokens.device))
    full = tokens.clone()
    full[:, 1::2] = sums / sizes
    keep = torch.ones(batch, count, dtype=torch.bool, device=tokens.device)
    keep.scatter_(1, 2 * src, False)
    return full[keep].view(batch, count - r, channels)


class TokenMerge(torch.nn.Module):
    """Reduces the encoder's (B, C, H, W) output; no parameters, so the state dict is unchanged."""

    def __init__(self, method: str, factor: int, ceil_mode: bool, r: int) -> None:
        super().__init__()
        self.method, self.factor, self.ceil_mode, self.r = method, factor, ceil_mode, r

    def out_grid(self, height: int, width: int) -> tuple[int, int]:
        if self.method == "tome":
            return 1, height * width - self.r
        if self.ceil_mode:  # ceil(x / f) == -(-x // f)
            return -(-height // self.factor), -(-width // self.factor)
        return height // self.factor, width // self.factor

    def forward(self, grid: Any) -> Any:
        if self.method == "tome":
            tokens = grid.flatten(2).transpose(1, 2)  # the same raster order get_image_features uses
            return tome(tokens, self.r).transpose(1, 2).unsqueeze(2)
        pool = F.avg_pool2d if self.method == "avg-pool" else F.max_pool2d
        return pool(grid, self.factor, self.factor, ceil_mode=self.ceil_mode)

    def extra_repr(self) -> str:
        return f"method={self.method}, factor={self.factor}, ceil_mode={self.ceil_mode}, r={self.r}"
