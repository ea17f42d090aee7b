"""KV-cache compression for decoding: integer-quantized keys/values and sliding-window attention.

*Quantize* (`int8`/`int4`): transformers 5 ships `QuantizedCache` backends (quanto, HQQ) that are
not installed here, so `_kv_layers.py` defines its own cache layer on transformers' cache API
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

from pydantic import Field, model_validator

from harness.errors import StepError
from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext

BITS = {"int8": 8, "int4": 4}


class KVCacheConfig(StepConfig):
    kind: Literal["kv-cache"] = "kv-cache"
    quantize: Literal["int8", "int4"] | None = None
    residual_length: int = Field(32, ge=1, description="newest tokens kept in full precision; also the block size")
    sliding_window: int | None = Field(None, ge=1, description="attend to (and cache) only the last N positions")
    full_attention_layers: int = Field(0, ge=0, description="first N decoder layers keep full attention "
                                                            "(with sliding_window; fewer than the model's layers)")

    @model_validator(mode="after")
    def _something_to_do(self) -> KVCacheConfig:
        if self.targets and list(self.targets) != ["llm"]:
            raise ValueError("kv-cache acts on the LLM's decoding cache only; drop 'targets' or use [llm]")
        if self.quantize is None and self.sliding_window is None:
            raise ValueError("kv-cache has nothing to do; set 'quantize: int8|int4' and/or 'sliding_window: N'")
        if self.full_attention_layers and self.sliding_window is None:
            raise ValueError("full_attention_layers needs sliding_window (the other layers' window)")
        return self


def build_cache(text_config: Any, bits: int, residual_length: int) -> Any:
    """A cache with quantized full-attention layers; other layer types as transformers builds them."""
    from transformers.cache_utils import DYNAMIC_LAYER_TYPE_MAPPING, Cache, get_layer_types_and_kwargs

    from harness.steps._kv_layers import IntQuantizedLayer

    layer_types, kwargs = get_layer_types_and_kwargs(text_config)
    layers = [IntQuantizedLayer(bits=bits, residual_length=residual_length) if kind == "full_attention"
              else DYNAMIC_LAYER_TYPE_MAPPING[kind](**kw) for kind, kw in zip(layer_types, kwargs)]
    return Cache(layers=layers)


def set_sliding_window(model: Any, window: int, full_layers: int) -> list[str]:
    """Switch Qwen2 layers >= full_layers to sliding-window attention, in the config and the modules."""
    llm = model.llm
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
        try:  # targets, and that there is something to do, are checked by the config
            llm = model.llm
        except AttributeError:
            llm = None
        if llm is None or not hasattr(llm, "layers") or not hasattr(model, "cache_factory"):
            raise StepError("step 'kv-cache': this model has no torch LLM decoder to cache for; "
                            "apply kv-cache to a torch FastVLM before any export step")
        count = llm.config.num_hidden_layers
        if config.sliding_window is not None:
            if config.full_attention_layers >= count:
                raise StepError(f"step 'kv-cache': full_attention_layers {config.full_attention_layers} leaves no "
                                f"sliding layer of {count}; use a value below {count}")
            types = set_sliding_window(model, config.sliding_window, config.full_attention_layers)
            ctx.note(f"llm: sliding-window attention {config.sliding_window} on "
                     f"{types.count('sliding_attention')}/{count} layers")
        if config.quantize is not None:
            head_dim = getattr(llm.config, "head_dim", None) or llm.config.hidden_size // llm.config.num_attention_heads
            if config.quantize == "int4" and head_dim % 2:
                raise StepError("step 'kv-cache': int4 packing needs an even head dimension")
            model.cache_factory = functools.partial(build_cache, bits=BITS[config.quantize],
                                                    residual_length=config.residual_length)
            ctx.note(f"llm: {config.quantize} KV cache (keys per channel, values per token, "
                     f"{config.residual_length} newest tokens in full precision)")
