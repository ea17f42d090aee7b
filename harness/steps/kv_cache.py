"""KV-cache compression for decoding: integer-quantized keys/values and sliding-window attention.

*Quantize* (`int8`/`int4`): transformers 5 ships `QuantizedCache` backends (quanto, HQQ) that are
not installed here, so this module registers its own cache layer on transformers' cache API
(`BaseQuantizedLayer`), KIVI-style (Liu et al. 2024): the newest `residual_length` tokens stay in
full precision; every full block of that many tokens is quantized once and never re-quantized —
keys per channel (min/max over the block's tokens), values per token (over the head dimension),
asymmetric, with float16 scale and minimum; int4 packs two codes per byte. Reads dequantize. The
step sets `LoadedModel.cache_factory`, so our generation loop builds this cache; sliding layers (if
any) keep transformers' own sliding layer, whose size the window already bounds.

*Sliding window*: sets Qwen2's `use_sliding_window`, `sliding_window`, `max_window_layers` and
`layer_types` in the text config, and the attributes the attention modules copied from it at
construction, so masks really restrict attention to the last `sliding_window` positions and
`DynamicCache(config=...)` builds sliding layers that keep only `sliding_window - 1` past tokens.

Both are pure structure: replay re-applies them; no tensors change.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, Literal

from pydantic import Field

from harness.errors import StepError
from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext

BITS = {"int8": 8, "int4": 4}


class KVCacheConfig(StepConfig):
    kind: Literal["kv-cache"] = "kv-cache"
    quantize: Literal["int8", "int4"] | None = None
    residual_length: int = Field(32, ge=1, description="newest tokens kept in full precision; also the block size")
    sliding_window: int | None = Field(None, ge=1, description="attend to (and cache) only the last N positions")
    full_attention_layers: int = Field(0, ge=0, description="first N decoder layers keep full attention")


@functools.cache
def quantized_layer_class() -> type:
    """The cache layer class (built lazily: transformers is a heavy import)."""
    import torch
    from transformers.cache_utils import BaseQuantizedLayer

    def pack(codes: Any, bits: int) -> Any:
        return (codes[..., 0::2] | (codes[..., 1::2] << 4)).contiguous() if bits == 4 else codes.contiguous()

    def unpack(codes: Any, bits: int) -> Any:
        return torch.stack([codes & 0x0F, codes >> 4], dim=-1).flatten(-2) if bits == 4 else codes

    def quantize(x: Any, dim: int, bits: int) -> tuple[Any, Any, Any]:
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

    return IntQuantizedLayer


def build_cache(text_config: Any, bits: int, residual_length: int) -> Any:
    """A cache with quantized full-attention layers; other layer types as transformers builds them."""
    from transformers.cache_utils import DYNAMIC_LAYER_TYPE_MAPPING, Cache, get_layer_types_and_kwargs

    layer_class = quantized_layer_class()
    layer_types, kwargs = get_layer_types_and_kwargs(text_config)
    layers = [layer_class(bits=bits, residual_length=residual_length) if kind == "full_attention"
              else DYNAMIC_LAYER_TYPE_MAPPING[kind](**kw) for kind, kw in zip(layer_types, kwargs)]
    return Cache(layers=layers)


def set_sliding_window(model: Any, window: int, full_layers: int) -> list[str]:
    """Switch Qwen2 layers >= full_layers to sliding-window attention, in the config and the modules."""
    llm = model.model.get_submodule("model.language_model")
    config = llm.config
    count = config.num_hidden_layers
    config.use_sliding_window = True
    config.sliding_window = window
    config.max_window_layers = full_layers
    config.layer_types = ["sliding_attention" if i >= full_layers else "full_attention" for i in range(count)]
    for index, layer in enumerate(llm.layers):
        attention = layer.self_attn
        attention.layer_type = config.layer_types[index]
        attention.sliding_window = window if attention.layer_type == "sliding_attention" else None
    llm.has_sliding_layers = "sliding_attention" in config.layer_types
    return config.layer_types


@STEPS.register("kv-cache", "KV-cache compression for decoding: int8/int4 quantized cache, sliding window")
class KVCacheStep(Step):
    Config = KVCacheConfig
    default_targets: ClassVar[tuple[str, ...]] = ("llm",)
    examples: ClassVar[list[dict]] = [{"kind": "kv-cache", "quantize": "int8", "residual_length": 4},
                                      {"kind": "kv-cache", "quantize": "int4", "residual_length": 4},
                                      {"kind": "kv-cache", "sliding_window": 8}]

    def apply(self, config: KVCacheConfig, model: Any, ctx: StepContext) -> None:
        if self.targets(config) != ("llm",):
            raise StepError("step 'kv-cache': it acts on the LLM's decoding cache only; drop 'targets' or use [llm]")
        try:
            llm = model.model.get_submodule("model.language_model")
        except AttributeError:
            llm = None
        if llm is None or not hasattr(llm, "layers") or not hasattr(model, "cache_factory"):
            raise StepError("step 'kv-cache': this model has no torch LLM decoder to cache for; "
                            "apply kv-cache to a torch FastVLM before any export step")
        if config.quantize is None and config.sliding_window is None:
            raise StepError("step 'kv-cache': nothing to do; set 'quantize: int8|int4' and/or 'sliding_window: N'")
        count = llm.config.num_hidden_layers
        if config.sliding_window is not None:
            if config.full_attention_layers >= count:
                raise StepError(f"step 'kv-cache': full_attention_layers {config.full_attention_layers} leaves no "
                                f"sliding layer of {count}; use a value below {count}")
            types = set_sliding_window(model, config.sliding_window, config.full_attention_layers)
            ctx.note(f"llm: sliding-window attention {config.sliding_window} on "
                     f"{types.count('sliding_attention')}/{count} layers")
        elif config.full_attention_layers:
            raise StepError("step 'kv-cache': full_attention_layers needs sliding_window")
        if config.quantize is not None:
            head_dim = getattr(llm.config, "head_dim", None) or llm.config.hidden_size // llm.config.num_attention_heads
            if config.quantize == "int4" and head_dim % 2:
                raise StepError("step 'kv-cache': int4 packing needs an even head dimension")
            model.cache_factory = functools.partial(build_cache, bits=BITS[config.quantize],
                                                    residual_length=config.residual_length)
            ctx.note(f"llm: {config.quantize} KV cache (keys per channel, values per token, "
                     f"{config.residual_length} newest tokens in full precision)")
