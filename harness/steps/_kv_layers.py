"""The quantized KV-cache layer of step `kv-cache` (`kv_cache.py`), on transformers' cache API.

KIVI-style (Liu et al. 2024): the newest `residual_length` tokens stay in full precision; every
full block of that many tokens is quantized once and never re-quantized — keys per channel
(min/max over the block's tokens), values per token (over the head dimension), asymmetric, with
float16 scale and minimum; int4 packs two codes per byte. Reads dequantize.

A separate module so that it can import torch and transformers at its top: `kv_cache.py` is
imported when the step registry is discovered (validating a recipe imports no torch) and imports
this one only when a cache is built.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import BaseQuantizedLayer


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 codes as stored: INT4 packs two per byte along the last dim (even position in the low nibble)."""
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).contiguous() if bits == 4 else codes.contiguous()


def unpack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    return torch.stack([codes & 0x0F, codes >> 4], dim=-1).flatten(-2) if bits == 4 else codes


def quantize(x: torch.Tensor, dim: int, bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric min/max quantization reducing over `dim`; float16 scale and minimum."""
    x = x.float()  # bf16 cannot hold (x - low) / scale to a unit in 255
    low = x.amin(dim=dim, keepdim=True)
    high = x.amax(dim=dim, keepdim=True)
    scale = ((high - low) / (2**bits - 1)).clamp(min=1e-8).to(torch.float16)
    low = low.to(torch.float16)
    codes = ((x - low.float()) / scale.float()).round().clamp(0, 2**bits - 1).to(torch.uint8)
    return pack(codes, bits), scale, low


class IntQuantizedLayer(BaseQuantizedLayer):
    """KIVI-style int8/int4 KV layer: quantized blocks + a full-precision residual window.

    Quantized keys live in one code tensor (B, H, T_q, D or D/2) with per-block, per-channel
    scale/minimum (B, H, blocks, 1, D); values in one code tensor with per-token scale/minimum
    (B, H, T_q, 1). One tensor each keeps a decode step's dequantization to a few operations.
    """

    def __init__(self, bits: int = 8, residual_length: int = 32) -> None:
        super().__init__()
        self.bits, self.residual_length = bits, residual_length

    def _quantize(self, tensor: Any) -> Any:  # the base class's hook; blocks are quantized in `update`
        return quantize(tensor, -1, self.bits)

    def _dequantize(self, q_tensor: Any) -> Any:
        codes, scale, low = q_tensor
        return (unpack(codes, self.bits).float() * scale.float() + low.float()).to(self.keys.dtype)

    def _dequantized(self, dtype: Any) -> tuple[Any, Any] | None:
        if self._quantized_keys is None:
            return None
        codes, scale, low = self._quantized_keys
        batch, heads, blocks, _, dim = scale.shape
        keys = unpack(codes, self.bits).float().view(batch, heads, blocks, self.residual_length, dim)
        keys = (keys * scale.float() + low.float()).view(batch, heads, -1, dim).to(dtype)
        return keys, self._dequantize(self._quantized_values).to(dtype)

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.cumulative_length += key_states.shape[-2]
        residual_keys = torch.cat([self.keys, key_states], dim=-2)
        residual_values = torch.cat([self.values, value_states], dim=-2)
        old = self._dequantized(key_states.dtype)
        keys = residual_keys if old is None else torch.cat([old[0], residual_keys], dim=-2)
        values = residual_values if old is None else torch.cat([old[1], residual_values], dim=-2)
        blocks = residual_keys.shape[-2] // self.residual_length
        if blocks:
            self._store(residual_keys, residual_values, blocks)
            cut = blocks * self.residual_length
            residual_keys, residual_values = residual_keys[..., cut:, :], residual_values[..., cut:, :]
        self.keys, self.values = residual_keys.clone(), residual_values.clone()  # free the large storage
        return keys, values

    def _store(self, keys: Any, values: Any, blocks: int) -> None:
        """Quantize the first `blocks` full blocks: keys per channel in each block, values per token."""
        batch, heads, _, dim = keys.shape
        cut = blocks * self.residual_length
        grouped = keys[..., :cut, :].reshape(batch, heads, blocks, self.residual_length, dim)
        codes, scale, low = quantize(grouped, 3, self.bits)
        new_keys = (codes.view(batch, heads, cut, -1), scale, low)
        new_values = quantize(values[..., :cut, :], -1, self.bits)
        if self._quantized_keys is None:
            self._quantized_keys, self._quantized_values = new_keys, new_values
            return
        self._quantized_keys = tuple(torch.cat([a, b], dim=2) for a, b in zip(self._quantized_keys, new_keys))
        self._quantized_values = tuple(torch.cat([a, b], dim=2)
                                       for a, b in zip(self._quantized_values, new_values))

    def reorder_cache(self, beam_idx: Any) -> None:
        raise NotImplementedError("beam search is not used by the harness")
