"""What a model family declares, and the defaults most families share.

A family is one transformers VLM architecture (`model_type`) seen through the harness's component
names: where `vision`, `projector`, `llm`, `lm_head` and `embed_tokens` sit in the module tree,
how its image features are computed from the processor's output (the vision stage of the staged
generation), how many visual tokens an image gives, its tiny test model, its `random:<shape>`
shapes and the steps only it supports. No torch or transformers at import time: the registry
imports every family module to list them.
"""

from __future__ import annotations

from typing import Any, ClassVar

#: The names every family places (keys of `module_paths`).
PART_NAMES = ("vision", "projector", "llm", "lm_head", "embed_tokens")
#: What `export-onnx` needs (declared by each family that has it): its vision graph takes one pixel tensor of
#: (images or tiles, 3, H, W) and the generation loop splices the features row by row.
ONNX_GRAPHS = ("ONNX generation graphs for a vision tower fed one (tiles, 3, H, W) pixel tensor "
               "(FastVLM, InternVL)")


def component_paths(module_paths: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """The modules of each component (what `targets` name): the LLM is the decoder plus its head."""
    return {"vision": (module_paths["vision"],), "projector": (module_paths["projector"],),
            "llm": (module_paths["llm"], module_paths["lm_head"])}


class ModelFamily:
    """One VLM architecture. Subclasses set the class attributes and the transformers classes."""

    name: ClassVar[str] = ""
    #: The transformers `model_type`s (config.json) this family reads.
    model_types: ClassVar[tuple[str, ...]] = ()
    #: Where each of `PART_NAMES` sits in the transformers model: the one place these paths are written.
    module_paths: ClassVar[dict[str, str]] = {}
    #: `random:<shape>` → the published dimensions (family-specific keys, read by `random_config`).
    shapes: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Steps only some families support (this one among them) → what they need, worded for "step 'x' needs <this>".
    specific_steps: ClassVar[dict[str, str]] = {}
    #: What the vision tower is, in words (`harness ls models`).
    vision_tower: ClassVar[str] = ""
    #: The base name of this family's nano sibling (`harness.models.siblings`), "" when it has none.
    sibling: ClassVar[str] = ""

    @property
    def component_paths(self) -> dict[str, tuple[str, ...]]:
        return component_paths(self.module_paths)

    # --- transformers classes -------------------------------------------------------------
    def model_class(self) -> Any:
        raise NotImplementedError

    def config_class(self) -> Any:
        return self.model_class().config_class

    def config_from_dict(self, data: dict[str, Any]) -> Any:
        return self.config_class().from_dict(data)

    # --- models -----------------------------------------------------------------------------
    def tiny(self, seed: int = 0) -> Any:
        """A LoadedModel of a tiny config-built model (seconds to build and run): the contract tests'."""
        raise NotImplementedError

    def random_config(self, shape: str) -> tuple[Any, Any]:
        """(config, processor) of `random:<shape>` at the published dimensions."""
        raise NotImplementedError

    def nano_dims(self) -> dict[str, Any]:
        """The nano sibling's dimensions: the family's own keys, the decoder being nano's (`TEXT_ARGS`)."""
        raise NotImplementedError

    def nano_config(self) -> tuple[Any, Any]:
        """(config, processor) of the nano sibling: this architecture at nano's size, 64 px input, nano's
        word-level vocabulary and chat template (question before image) with the family's image tokens."""
        raise NotImplementedError

    def random_model(self, shape: str, seed: int = 0) -> Any:
        """`random:<shape>` with seeded random weights: transformers' own init for this family, whose
        activations (unlike FastViT's, see `harness.models.shapes`) stay healthy through every block —
        recorded and checked per stage like FastVLM's, so a collapse would show in the build notes."""
        from harness.models.shapes import record_activations

        config, processor = self.random_config(shape)
        loaded = self.build(config, processor, f"random:{shape}", seed)
        loaded.random_weights = True
        loaded.meta.setdefault("notes", []).append(
            f"random init ({loaded.source}): transformers' default initialisation of {self.name}")
        record_activations(loaded, self.image_size(processor)[0], seed)
        return loaded

    def build(self, config: Any, processor: Any, source: str, seed: int = 0) -> Any:
        """The model of `config` with seeded weights, in eval mode, as a LoadedModel."""
        import torch

        from harness.models.fastvlm import LoadedModel

        torch.manual_seed(seed)
        model = self.model_class()(config).eval()
        model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
        model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
        return LoadedModel(model=model, processor=processor, source=source)

    # --- images -----------------------------------------------------------------------------
    def tile_tokens(self, shape: str) -> int:
        """Visual tokens one image tile gives at `shape`'s dimensions (arithmetic on the config numbers)."""
        raise NotImplementedError

    def image_features(self, model: Any, inputs: Any) -> Any:
        """The projected features of the images in `inputs` (the processor's output), in the order of the
        prompt's image tokens: what prefill scatters into the embeddings."""
        raise NotImplementedError

    def image_size(self, processor: Any) -> tuple[int, int]:
        """(height, width) one image (tile) is resized to."""
        image_processor = processor.image_processor
        crop = getattr(image_processor, "crop_size", None) or {}
        size = image_processor.size
        height = crop.get("height") or size.get("height") or size.get("shortest_edge")
        width = crop.get("width") or size.get("width") or size.get("shortest_edge")
        return int(height), int(width)

    def visual_tokens(self, loaded: Any, height: int | None = None, width: int | None = None) -> int:
        """Image tokens one image of (height, width) puts into a prompt (default: the processor's
        size), counted on what the processor itself writes for a blank image of that size."""
        from PIL import Image

        default_h, default_w = self.image_size(loaded.processor)
        image = Image.new("RGB", (width or default_w, height or default_h))
        inputs = loaded.prepare([image], [""])
        return int((inputs["input_ids"][0] == loaded.model.config.image_token_id).sum())

    def describe_shape(self, shape: str) -> str:
        """One line of `shape`'s dimensions for `harness ls models`."""
        dims = self.shapes[shape]
        text, vision = dims["text"], dims.get("vision", {})
        parts = [f"LLM {text['num_hidden_layers']}L x {text['hidden_size']}"]
        if vision.get("hidden_size"):
            parts.append(f"vision {vision['num_hidden_layers']}L x {vision['hidden_size']}")
        parts.append(f"{self.tile_tokens(shape)} visual tokens per tile")
        return ", ".join(parts)


class ConfigBuiltFamily(ModelFamily):
    """A family whose tiny model, `random:` shapes and nano sibling all come from one `_config(dims,
    tokenizer)` (InternVL, SmolVLM, LLaVA-OneVision): they differ only in those dimensions and in the
    special tokens the nano tokenizer gets, declared as class attributes."""

    #: The contract tests' tiny dimensions, and the nano sibling's own (non-decoder) ones.
    tiny_dims: ClassVar[dict[str, Any]] = {}
    nano_own_dims: ClassVar[dict[str, Any]] = {}
    #: `harness.models.families._text.nano_tokenizer`'s arguments: the family's special tokens.
    nano_tokens: ClassVar[tuple[Any, ...]] = ()

    def _config(self, dims: dict[str, Any], tokenizer: Any = None) -> tuple[Any, Any]:
        raise NotImplementedError

    def tiny(self, seed: int = 0) -> Any:
        config, processor = self._config(self.tiny_dims)
        return self.build(config, processor, f"tiny-{self.name.replace('_', '-')}", seed)

    def random_config(self, shape: str) -> tuple[Any, Any]:
        return self._config(self.shapes[shape])

    def nano_dims(self) -> dict[str, Any]:
        from harness.models.nano import TEXT_ARGS

        return {**self.nano_own_dims, "text": dict(TEXT_ARGS)}

    def nano_config(self) -> tuple[Any, Any]:
        from harness.models.families._text import nano_tokenizer

        return self._config(self.nano_dims(), nano_tokenizer(*self.nano_tokens))
