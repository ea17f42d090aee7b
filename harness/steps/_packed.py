"""The storage module of step `weight-quant`: a Linear whose weight lives as packed integer codes.

Intel neural-compressor (INC) computes the quantization (RTN rounding, GPTQ error feedback, AWQ
scale and clip search) and leaves `INCWeightOnlyLinear` modules. Those are converted here into
`PackedLinear`, for three reasons: INC's "optimum" layout keeps zero points even for symmetric
codes, its forward caches a float copy of the whole weight (so a loaded variant would hold fp32
weights next to the codes), and AWQ's self-absorbed layers come wrapped in `MulLinear`.
`PackedLinear` keeps only what is needed, as plain buffers that `artifacts.save_variant` stores
verbatim:

- `qweight` uint8 `(out, ceil(in / (8 // bits)))`: INT4 codes two per byte (low nibble = even
  column), INT8 codes one per byte; codes are unsigned (symmetric codes are offset by 2**(bits-1));
- `scales` float16 `(out, in // group)`; `qzeros` uint8, packed like the weight, asymmetric only;
- `bias` float16 (as INC stores it), `input_scale` float32 `(in,)` only for AWQ layers whose
  activation scale could not be folded into a preceding layer.

The weight is dequantized on every call (nothing float is cached), trading decode speed for
resident memory, which is what weight-only quantization is for on small devices.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Unsigned codes `(rows, n)` → uint8 bytes; INT4 puts two codes per byte (odd n is padded)."""
    codes = codes.to(torch.uint8)
    if bits == 8:
        return codes.contiguous()
    if codes.shape[1] % 2:
        codes = torch.cat([codes, codes.new_zeros(codes.shape[0], 1)], dim=1)
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).contiguous()


def unpack_codes(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of `pack_codes`: uint8 bytes → codes `(rows, n)` as int16."""
    if bits == 8:
        return packed.to(torch.int16)
    both = torch.stack((packed & 0x0F, packed >> 4), dim=-1).reshape(packed.shape[0], -1)
    return both[:, :n].to(torch.int16)


class PackedLinear(torch.nn.Module):
    """Weight-only quantized Linear with packed INT4/INT8 codes, fp16 group scales."""

    def __init__(self, in_features: int, out_features: int, bits: int, group_size: int, symmetric: bool,
                 bias: bool, input_scale: bool = False, act_bits: int | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        #: INT8 activations (step `qat`): torchao's dynamic per-token fake quantizer, as trained.
        self.act_bits = act_bits
        self.act_quantizer = activation_fake_quantizer(act_bits) if act_bits else None
        self.bits, self.symmetric = bits, symmetric
        self.group_size = in_features if group_size == -1 else group_size
        self.n_groups = in_features // self.group_size
        per_byte = 8 // bits
        self.register_buffer("qweight", torch.zeros(out_features, math.ceil(in_features / per_byte), dtype=torch.uint8))
        self.register_buffer("scales", torch.zeros(out_features, self.n_groups, dtype=torch.float16))
        if not symmetric:
            self.register_buffer("qzeros", torch.zeros(out_features, math.ceil(self.n_groups / per_byte),
                                                       dtype=torch.uint8))
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float16) if bias else None)
        self.register_buffer("input_scale", torch.ones(in_features) if input_scale else None)

    def dequantize(self, dtype: Any = torch.float32) -> torch.Tensor:
        """The float weight `(out, in)` the codes stand for."""
        codes = unpack_codes(self.qweight, self.bits, self.in_features).float()
        codes = codes.view(self.out_features, self.n_groups, self.group_size)
        if self.symmetric:
            zeros: Any = float(2 ** (self.bits - 1))
        else:
            zeros = unpack_codes(self.qzeros, self.bits, self.n_groups).float().unsqueeze(-1)
        weight = (codes - zeros) * self.scales.float().unsqueeze(-1)
        return weight.view(self.out_features, self.in_features).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_quantizer is not None:
            x = self.act_quantizer(x)
        if self.input_scale is not None:
            x = x * self.input_scale.to(x.dtype)
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.dequantize(x.dtype), bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group_size={self.group_size}, symmetric={self.symmetric}, bias={self.bias is not None}"
                + (f", act_bits={self.act_bits}" if self.act_bits else ""))


def activation_fake_config(bits: int) -> Any:
    """torchao's dynamic per-token asymmetric activation quantization: the one definition that step
    `qat` trains with and a stored `PackedLinear` applies, so the saved variant computes what training saw."""
    from torchao.quantization.qat import IntxFakeQuantizeConfig

    if bits != 8:
        raise ValueError(f"activation quantization supports 8 bits, not {bits}")
    return IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False)


def activation_fake_quantizer(bits: int) -> Any:
    """The fake quantizer of `activation_fake_config` (no state: nothing is stored)."""
    from torchao.quantization.qat import IntxFakeQuantizer

    return IntxFakeQuantizer(activation_fake_config(bits))


def from_signed_codes(codes: torch.Tensor, scales: torch.Tensor, bits: int, group_size: int,
                      bias: torch.Tensor | None, act_bits: int | None = None) -> PackedLinear:
    """A symmetric `PackedLinear` from signed codes `(out, in)` in [-2**(bits-1), 2**(bits-1)) and
    scales `(out, in // group)` (step `qat` computes them with torchao's own quantize primitive)."""
    out_features, in_features = codes.shape
    half = 2 ** (bits - 1)
    if int(codes.min()) < -half or int(codes.max()) >= half:
        raise ValueError(f"signed codes outside [{-half}, {half})")
    layer = PackedLinear(in_features, out_features, bits, group_size, True, bias=bias is not None,
                         act_bits=act_bits)
    with torch.no_grad():
        layer.qweight.copy_(pack_codes((codes.to(torch.int32) + half), bits))
        layer.scales.copy_(scales.reshape(out_features, -1).to(torch.float16))
        if bias is not None:
            layer.bias.copy_(bias.detach().to(torch.float16))
    return layer


def from_inc(module: Any, bits: int, group_size: int, symmetric: bool, bias: bool) -> PackedLinear:
    """Convert INC's `INCWeightOnlyLinear` (optionally inside AWQ's `MulLinear`) to `PackedLinear`.

    `bias` says whether the original Linear had one (INC's layout always carries a bias buffer).
    """
    input_scale = None
    if type(module).__name__ == "MulLinear":
        input_scale = module.input_scale.detach().float().reshape(-1)
        module = module.linear
    if getattr(module, "g_idx", None) is not None:
        raise ValueError("act-order (g_idx) layouts are not supported")
    params = module.unpack()
    codes = params["int_weight"][:, :module.in_features].to(torch.int32)
    scales = params["scales"]
    zeros = params.get("zp")
    half = 2 ** (bits - 1)
    if zeros is None:  # INC's non-optimum symmetric layout: signed codes
        codes, zeros = codes + half, torch.full_like(scales, half, dtype=torch.int32)
    zeros = zeros.to(torch.int32)
    if symmetric and not bool((zeros == half).all()):
        raise ValueError(f"INC returned non-constant zero points for a symmetric layer ({type(module).__name__})")
    layer = PackedLinear(module.in_features, module.out_features, bits, group_size, symmetric,
                         bias=bias, input_scale=input_scale is not None)
    if int(codes.min()) < 0 or int(codes.max()) >= 2 ** bits:
        raise ValueError(f"codes outside [0, {2 ** bits}) after unpacking")
    with torch.no_grad():
        layer.qweight.copy_(pack_codes(codes, bits))
        layer.scales.copy_(scales.to(torch.float16))
        if not symmetric:
            layer.qzeros.copy_(pack_codes(zeros, bits))
        if bias:
            layer.bias.copy_(module.bias.detach().to(torch.float16))
        if input_scale is not None:
            layer.input_scale.copy_(input_scale)
    return layer
