"""The FastVLM adapter: components by name, batched greedy generation with staged timings.

Generation is a plain greedy loop over the model's own modules (vision tower + projector, the
Qwen2 decoder with a `DynamicCache`, the LM head) so that each stage can be timed on its own:
preprocess (processor), vision (encoder + projector), prefill, and every decode step. A contract
test checks that its tokens equal `model.generate(do_sample=False)`.

Steps that change how decoding stores its keys/values (see `harness/steps/kv_cache.py`) set
`LoadedModel.cache_factory`; it is not saved, the step is replayed on load and sets it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Where each named part sits in a transformers `FastVlmForConditionalGeneration`: the one place
#: these paths are written (the `fastvlm` family declares them; other families declare their own,
#: see `harness.models.families`). `LoadedModel.vision` etc. read the paths of the model's family,
#: and so does `named_module` for code that holds the bare transformers model.
_DECODER = "model.language_model"
MODULE_PATHS: dict[str, str] = {
    "vision": "model.vision_tower",
    "projector": "model.multi_modal_projector",
    "llm": _DECODER,
    "lm_head": "lm_head",
    "embed_tokens": f"{_DECODER}.embed_tokens",
}
#: FastVLM's modules of each component (what `targets` name): the LLM is the decoder plus its head.
COMPONENT_PATHS: dict[str, tuple[str, ...]] = {
    "vision": (MODULE_PATHS["vision"],),
    "projector": (MODULE_PATHS["projector"],),
    "llm": (MODULE_PATHS["llm"], MODULE_PATHS["lm_head"]),
}


def named_module(model: Any, name: str) -> Any:
    """The part `name` (a key of `MODULE_PATHS`) of a transformers model of any family.

    Raises AttributeError when the model has no such module (e.g. it was replaced by None)."""
    return model.get_submodule(model_family(model).module_paths[name])


def model_family(model: Any) -> Any:
    """The family (`harness.models.families`) of a transformers model, from its config's `model_type`."""
    from harness.models.families import family_of_model_type

    return family_of_model_type(getattr(model.config, "model_type", None))


def is_plain_tensor(tensor: Any) -> bool:
    """A plain tensor or Parameter, not a torchao/quantized tensor subclass."""
    import torch

    return type(tensor) in (torch.Tensor, torch.nn.Parameter)


@dataclass
class StageTimes:
    """Milliseconds per stage of one generation call (whole batch)."""

    preprocess_ms: float = 0.0
    vision_ms: float = 0.0
    prefill_ms: float = 0.0
    decode_ms: list[float] = field(default_factory=list)
    total_ms: float = 0.0
    #: Bytes held by the KV cache when generation ended (distinct tensor storages), or None.
    kv_cache_bytes: int | None = None

    @property
    def ttft_ms(self) -> float:
        return self.preprocess_ms + self.vision_ms + self.prefill_ms


@dataclass
class Generation:
    texts: list[str]
    token_ids: list[list[int]]
    times: StageTimes
    first_logits: Any = None  # (batch, vocab) logits of the first generated token


@dataclass
class LoadedModel:
    """A VLM of one of the model families with its processor; the unit every step, runtime and suite
    works on. Its components, image features and visual tokens come from its family."""

    model: Any
    processor: Any
    source: str
    random_weights: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    #: Builds the KV cache for one `generate` call from the text config; None means
    #: `DynamicCache(config=text_config)` (which already honours sliding-window layer types).
    cache_factory: Callable[[Any], Any] | None = None

    # --- components -------------------------------------------------------------------
    @property
    def family(self) -> Any:
        """The model family (`harness.models.families`), from the config's `model_type`."""
        return model_family(self.model)

    @property
    def component_paths(self) -> dict[str, tuple[str, ...]]:
        return self.family.component_paths

    def component_modules(self, component: str) -> dict[str, Any]:
        """Qualified name → module for a component (`vision`, `projector`, `llm`)."""
        return {path: self.model.get_submodule(path) for path in self.component_paths[component]}

    def module(self, name: str) -> Any:
        """The part `name` (a key of `MODULE_PATHS`); the properties below name each one."""
        return named_module(self.model, name)

    @property
    def vision(self) -> Any:
        """The vision tower (FastVLM: FastViTHD through transformers' timm wrapper)."""
        return self.module("vision")

    @property
    def projector(self) -> Any:
        """The multi-modal projector: encoder channels → LLM hidden size."""
        return self.module("projector")

    @property
    def llm(self) -> Any:
        """The decoder (without its head; Qwen2 or Llama): returns hidden states, takes `inputs_embeds`."""
        return self.module("llm")

    @property
    def lm_head(self) -> Any:
        """The LM head: decoder hidden states → vocabulary logits."""
        return self.module("lm_head")

    @property
    def embed_tokens(self) -> Any:
        """The decoder's token embedding (what `model.get_input_embeddings()` returns)."""
        return self.module("embed_tokens")

    def image_features(self, pixel_values: Any) -> Any:
        """Vision tower + projector on `pixel_values`: transformers' output with `pooler_output`
        (projected features, items x tokens x hidden) and `last_hidden_state` (the encoder grid).
        FastVLM's call; `generate` goes through the family (`family.image_features`), which any family has."""
        return self.model.model.get_image_features(pixel_values=pixel_values)

    def component_of(self, qualified_name: str) -> str | None:
        for component, paths in self.component_paths.items():
            if any(qualified_name == p or qualified_name.startswith(p + ".") for p in paths):
                return component
        return None

    @property
    def dtype(self) -> Any:
        return next(self.model.parameters()).dtype

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) the processor resizes an image (or one tile of it) to."""
        return self.family.image_size(self.processor)

    @property
    def visual_tokens(self) -> int:
        """Image tokens per prompt for an image of `image_size`, as the processor puts them (FastVLM:
        computed as the processor does, token merging offsets it; tiling families: counted)."""
        return self.family.visual_tokens(self)

    # --- inputs -------------------------------------------------------------------------
    def prompts(self, questions: list[str]) -> list[str]:
        return chat_prompts(self.processor, questions)

    def prepare(self, images: list[Any], questions: list[str]) -> Any:
        """Image preprocessing + tokenization, left-padded for batched decoding."""
        self.processor.tokenizer.padding_side = "left"
        rgb = [img.convert("RGB") if hasattr(img, "convert") else img for img in images]
        return self.processor(images=rgb, text=self.prompts(questions), padding=True,
                              return_tensors="pt")

    def encode_images(self, images: list[Any]) -> Any:
        """Projected image features (items, tokens, hidden) as float32 numpy: the same method the
        exported runtimes' sessions have, so parity compares like with like."""
        import torch

        inputs = self.prepare(images, [""] * len(images))
        with torch.inference_mode():
            features = self.family.image_features(self.model, inputs)
        return features.float().numpy()

    # --- generation -------------------------------------------------------------------
    def generate(
        self,
        images: list[Any],
        questions: list[str],
        max_new_tokens: int = 8,
        min_new_tokens: int = 0,
        keep_logits: bool = False,
    ) -> Generation:
        """Greedy, deterministic batched generation with per-stage wall-clock timings."""
        import torch

        times = StageTimes()
        start = time.perf_counter()
        inputs = self.prepare(images, questions)
        times.preprocess_ms = (time.perf_counter() - start) * 1e3

        eos = torch.tensor(self.eos_token_ids(), dtype=torch.long)
        with torch.inference_mode():
            mark = time.perf_counter()
            features = self.family.image_features(self.model, inputs)
            times.vision_ms = (time.perf_counter() - mark) * 1e3

            mark = time.perf_counter()
            logits, cache, positions = self._prefill(inputs, features)
            next_ids = logits.argmax(-1)
            times.prefill_ms = (time.perf_counter() - mark) * 1e3
            first_logits = logits if keep_logits else None
            generated, cache = self._decode(next_ids, cache, inputs["attention_mask"], positions[:, -1], eos,
                                            max_new_tokens, min_new_tokens, times)
        times.total_ms = (time.perf_counter() - start) * 1e3
        times.kv_cache_bytes = cache_nbytes(cache)
        rows = torch.stack(generated, dim=1).tolist()
        token_ids = [_cut_at_eos(row, eos.tolist()) for row in rows]
        texts = self.processor.tokenizer.batch_decode(token_ids, skip_special_tokens=True)
        return Generation([t.strip() for t in texts], token_ids, times, first_logits)

    def _prefill(self, inputs: Any, features: Any) -> tuple[Any, Any, Any]:
        """Image features placed at the `<image>` tokens, one decoder pass over the prompts into a new
        cache. Returns (float logits of the next token, the cache, the prompt position ids)."""
        from transformers import DynamicCache

        input_ids = inputs["input_ids"]
        mask = inputs["attention_mask"]
        embeds = self.embed_tokens(input_ids)
        image_mask = (input_ids == self.model.config.image_token_id).unsqueeze(-1)
        embeds = embeds.masked_scatter(image_mask, features.to(embeds.dtype))
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: the first real token is position 0
        text_config = self.model.config.text_config
        cache = self.cache_factory(text_config) if self.cache_factory else DynamicCache(config=text_config)
        out = self.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, cache=cache,
                       use_cache=True)
        return self.lm_head(out.last_hidden_state[:, -1, :]).float(), out.cache, positions

    def _decode(self, next_ids: Any, cache: Any, mask: Any, last_pos: Any, eos: Any, max_new_tokens: int,
                min_new_tokens: int, times: StageTimes) -> tuple[list[Any], Any]:
        """One decoder step per new token until every row has ended (past `min_new_tokens`) or
        `max_new_tokens`; each step's time goes to `times.decode_ms`. Returns (token ids per step, cache)."""
        import torch

        llm, head, embed = self.llm, self.lm_head, self.embed_tokens
        generated = [next_ids]
        finished = torch.isin(next_ids, eos)
        while len(generated) < max_new_tokens:
            if len(generated) >= min_new_tokens and bool(finished.all()):
                break
            mark = time.perf_counter()
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
            last_pos = last_pos + 1
            out = llm(inputs_embeds=embed(next_ids[:, None]), attention_mask=mask, position_ids=last_pos[:, None],
                      cache=cache, use_cache=True)
            cache = out.cache
            next_ids = head(out.last_hidden_state[:, -1, :]).argmax(-1)
            generated.append(next_ids)
            finished |= torch.isin(next_ids, eos)
            times.decode_ms.append((time.perf_counter() - mark) * 1e3)
        return generated, cache

    def eos_token_ids(self) -> list[int]:
        """Ids that end an answer: the generation config's, else the tokenizer's (exported runtimes
        read the same list from their export manifest)."""
        ids = self.model.generation_config.eos_token_id
        if ids is None:
            ids = self.processor.tokenizer.eos_token_id
        ids = ids if isinstance(ids, list) else [ids]
        return [int(i) for i in ids if i is not None]

    # --- bookkeeping ------------------------------------------------------------------
    def parameter_count(self, component: str | None = None) -> int:
        modules = (
            self.component_modules(component).values() if component else [self.model]
        )
        return sum(p.numel() for m in modules for p in m.parameters())


def cache_nbytes(cache: Any) -> int | None:
    """Bytes of the distinct tensor storages a cache's layers hold (quantized parts included).

    Storages, not tensor views: a sliding layer keeps a slice of a larger tensor alive, and that
    whole tensor is what occupies memory.
    """
    import torch

    layers = getattr(cache, "layers", None)
    if layers is None:
        return None
    seen: dict[int, int] = {}

    def visit(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    for layer in layers:
        visit(list(vars(layer).values()))
    seen.pop(0, None)  # empty tensors share a null storage
    return sum(seen.values())


def chat_prompts(processor: Any, questions: list[str]) -> list[str]:
    """One user turn (image + question) per question, ending where the assistant answers."""
    return [processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
        add_generation_prompt=True, tokenize=False) for q in questions]


def _cut_at_eos(row: list[int], eos: list[int]) -> list[int]:
    for index, token in enumerate(row):
        if token in eos:
            return row[:index]
    return row
