"""Write the `fast_vlm` directory of an Apple `llava_qwen2` checkpoint (see `harness.models.apple`).

Weights stream: the shards are opened with safetensors' `safe_open` (memory-mapped), each tensor
is read, renamed and written on its own into one `model.safetensors` whose header is computed
from the source headers first — a 7B checkpoint never sits in memory whole.

The image token. Apple's code never embeds an image token (LLaVA splices image features in at a
`-200` placeholder); `fast_vlm` needs a real vocabulary id, so `<image>` is added to the
tokenizer. transformers' conversion script samples that embedding from a normal around the
embedding mean (random on every run); here the row is the *mean of the existing token rows*
(that distribution's expectation: deterministic, and distinct from every real token row, which
the embeddings-only placeholder mask relies on). It cannot change outputs:
`FastVlmModel.forward` replaces every image-token position of `inputs_embeds` by the projected
image features (`masked_scatter`) before the language model runs. When the id falls inside
Apple's padded embedding rows (0.5B: 151646 of 151936 rows) no row is added and `lm_head` is
Apple's, so logits are identical over the whole vocabulary; otherwise rows are added (to a
multiple of 64) with the mean embedding and the mean `lm_head` row.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import ModelLoadError, first_line
from harness.models._apple_mapping import TOKENIZER_FILES, AppleCheckpoint, map_keys, reduction, vision_structure

IMAGE_TOKEN = "<image>"
EMBED = "model.language_model.embed_tokens.weight"
LM_HEAD = "lm_head.weight"
#: Apple's FastVLM prompt (ml-fastvlm's `conv_qwen_2` with the image placed before the question, as
#: its predict.py does): a default system turn, then `<image>\n<question>` in the user turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% set images = message['content'] | selectattr('type', 'equalto', 'image') | list %}"
    "{% for part in images %}{{ '<image>' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% if images or not loop.first %}{{ '\\n' }}{% endif %}{{ part['text'] }}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
#: Qwen2 fields of Apple's config that the text config keeps (everything else is LLaVA's).
TEXT_FIELDS = ("attention_dropout", "bos_token_id", "eos_token_id", "pad_token_id", "hidden_act", "hidden_size",
               "initializer_range", "intermediate_size", "max_position_embeddings", "max_window_layers",
               "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "rms_norm_eps", "rope_theta",
               "rope_scaling", "rope_parameters", "sliding_window", "use_sliding_window", "tie_word_embeddings",
               "vocab_size", "use_cache", "layer_types")
#: Stages of timm's `fastvit_mci3` with a conditional positional encoding (its `pos_embs`).
MCI3_POS_EMB_STAGES = (3, 4)
ALIGN = 64
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def write_fast_vlm(checkpoint: AppleCheckpoint, out: Path) -> dict[str, Any]:
    """Config, weights, tokenizer, processor and chat template of the `fast_vlm` model into `out`."""
    sources = _read_headers(checkpoint.shards)
    names = map_keys(sources)
    shapes = {names[k]: sources[k][1] for k in names}
    try:
        structure = vision_structure(shapes)
    except ValueError as exc:
        raise ModelLoadError(f"'{checkpoint.path}': {exc}; it is not a FastViT (mobileclip) vision tower") from None
    _check_structure(checkpoint, structure)
    processor, text_rows = _processor(checkpoint, reduction(structure["model_args"]))
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    rows = shapes[EMBED][0] if EMBED in shapes else 0
    new_rows = rows if image_id < rows else math.ceil((image_id + 1) / 64) * 64
    config = _config(checkpoint, structure, processor, image_id, new_rows)
    resized = {EMBED: new_rows, LM_HEAD: new_rows} if new_rows != rows else {}
    _check_against_model(checkpoint, config, {k: _resized(k, v, resized) for k, v in shapes.items()})
    _write_weights(sources, names, out / "model.safetensors", image_id, text_rows, resized)
    config.save_pretrained(out)
    processor.save_pretrained(out)
    _generation_config(checkpoint, config).save_pretrained(out)
    return {"image_token_id": image_id, "image_token_row": "mean of the token embedding rows",
            "rows_added": new_rows - rows, "vision_model_args": structure["model_args"],
            "tensors": len(names), "shards": [s.name for s in checkpoint.shards]}


def _resized(name: str, shape: tuple[int, ...], resized: dict[str, int]) -> tuple[int, ...]:
    return (resized[name], *shape[1:]) if name in resized else shape


def _read_headers(shards: list[Path]) -> dict[str, tuple[Path, tuple[int, ...], str]]:
    """Every tensor's shard, shape and dtype, from the headers alone."""
    from safetensors import SafetensorError, safe_open

    found: dict[str, tuple[Path, tuple[int, ...], str]] = {}
    for shard in shards:
        try:
            with safe_open(str(shard), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - a safe_open handle is not iterable
                    piece = handle.get_slice(key)
                    found[key] = (shard, tuple(piece.get_shape()), piece.get_dtype())
        except (SafetensorError, OSError) as exc:
            raise ModelLoadError(f"'{shard}' is not a readable safetensors file ({first_line(exc)}); "
                                 "download it again") from None
    return found


def _check_structure(checkpoint: AppleCheckpoint, structure: dict[str, Any]) -> None:
    stages = len(structure["model_args"]["layers"])
    expected = [s for s in MCI3_POS_EMB_STAGES if s < stages]
    if stages > 5 or structure["pos_emb_stages"] != expected:
        raise ModelLoadError(
            f"'{checkpoint.path}': the vision tower has {stages} stages with positional encodings in stages "
            f"{structure['pos_emb_stages']}; timm's fastvit_mci3 (FastViTHD) has at most 5 with them in "
            f"{list(MCI3_POS_EMB_STAGES)}, so this tower cannot be mapped")


def _processor(checkpoint: AppleCheckpoint, patch: int) -> tuple[Any, int]:
    """Apple's tokenizer plus `<image>`, and the image processor Apple's MobileCLIP tower builds
    (resize + centre crop to the tower's size, mean 0, std 1). Returns it and the number of
    tokens the tokenizer had before `<image>` (the rows the mean embedding is taken over)."""
    from transformers import AddedToken, AutoTokenizer, CLIPImageProcessor, LlavaProcessor

    # Loaded from a copy of the tokenizer files alone: AutoTokenizer would otherwise read Apple's
    # config.json (an unknown model type) and could be pointed at the checkpoint's Python code.
    with tempfile.TemporaryDirectory() as tmp:
        for name in TOKENIZER_FILES:
            if (checkpoint.path / name).is_file():
                shutil.copy(checkpoint.path / name, Path(tmp) / name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(tmp, trust_remote_code=False, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"cannot read the tokenizer of '{checkpoint.path}' ({first_line(exc)}); "
                                 "restore its tokenizer files") from None
    before = len(tokenizer)
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    size = checkpoint.image_size
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}, do_center_crop=True,
        image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0], do_convert_rgb=True)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch,
                               vision_feature_select_strategy="full", chat_template=CHAT_TEMPLATE,
                               image_token=IMAGE_TOKEN)
    return processor, before


def _config(checkpoint: AppleCheckpoint, structure: dict[str, Any], processor: Any, image_id: int,
            rows: int) -> Any:
    from transformers import FastVlmConfig, Qwen2Config, TimmWrapperConfig

    apple = checkpoint.config
    text = {k: apple[k] for k in TEXT_FIELDS if k in apple}
    text["vocab_size"] = rows
    if text.get("pad_token_id") is None and processor.tokenizer.pad_token_id is not None:
        text["pad_token_id"] = processor.tokenizer.pad_token_id
    vision = TimmWrapperConfig(architecture="fastvit_mci3", do_pooling=False, hidden_size=structure["num_features"],
                               model_args=structure["model_args"])
    tokens_per_side = checkpoint.image_size // reduction(structure["model_args"])
    return FastVlmConfig(vision_config=vision, text_config=Qwen2Config(**text), image_token_id=image_id,
                         image_seq_length=tokens_per_side ** 2, projector_hidden_act="gelu",
                         vision_feature_select_strategy="full", vision_feature_layer=-1,
                         multimodal_projector_bias=True)


def _check_against_model(checkpoint: AppleCheckpoint, config: Any, shapes: dict[str, tuple[int, ...]]) -> None:
    """The mapped names and shapes are exactly those of the `fast_vlm` model the config builds
    (on the meta device: no memory); the first difference is the one line."""
    import torch
    from transformers import FastVlmForConditionalGeneration

    with torch.device("meta"):
        model = FastVlmForConditionalGeneration(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if config.text_config.tie_word_embeddings:
        expected.pop(LM_HEAD, None)
        shapes = {k: v for k, v in shapes.items() if k != LM_HEAD}
    missing = sorted(set(expected) - set(shapes))
    unknown = sorted(set(shapes) - set(expected))
    wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
    where = f"'{checkpoint.path}'"
    if missing:
        raise ModelLoadError(f"{where} lacks {len(missing)} weight(s) of the model its config describes "
                             f"(first: {missing[0]}); the checkpoint is incomplete or not a FastVLM")
    if unknown:
        raise ModelLoadError(f"{where} has {len(unknown)} weight(s) the mapping does not know "
                             f"(first: {unknown[0]}); it is not a layout the harness can convert")
    if wrong:
        raise ModelLoadError(f"{where}: {wrong[0]} has shape {list(shapes[wrong[0]])}, the config implies "
                             f"{list(expected[wrong[0]])}; config.json and the weights disagree")


def _generation_config(checkpoint: AppleCheckpoint, config: Any) -> Any:
    from transformers import GenerationConfig

    source = checkpoint.path / "generation_config.json"
    fields = json.loads(source.read_text()) if source.is_file() else {}
    fields = {k: v for k, v in fields.items() if not k.startswith("_") and k != "transformers_version"}
    generation = GenerationConfig(**fields)
    if generation.eos_token_id is None:
        generation.eos_token_id = config.text_config.eos_token_id
    if generation.pad_token_id is None:
        generation.pad_token_id = config.text_config.pad_token_id
    return generation


def _write_weights(sources: dict[str, tuple[Path, tuple[int, ...], str]], names: dict[str, str], target: Path,
                   image_id: int, text_rows: int, resized: dict[str, int]) -> None:
    """One safetensors file, written tensor by tensor (header first, from the source headers).

    Transformers uses the tensors in place in the memory-mapped file, and CPU kernels round
    differently on weights that are not 64-byte aligned (measured: 3e-8 on the tiny tower's
    features). safetensors allows no gaps, so the data starts on a 64-byte boundary and the
    tensors whose size is a multiple of 64 bytes (all of FastVLM's large ones) come first."""
    from safetensors import SafetensorError, safe_open

    def size_of(key: str) -> int:
        return math.prod(_resized(names[key], sources[key][1], resized)) * ITEMSIZE[sources[key][2]]

    order = sorted(names, key=lambda k: (size_of(k) % ALIGN != 0, str(sources[k][0]), k))
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key in order:
        shape, size = _resized(names[key], sources[key][1], resized), size_of(key)
        header[names[key]] = {"dtype": sources[key][2], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-(8 + len(blob)) % ALIGN)
    shard, handle = None, None
    try:
        with target.open("wb") as out:
            out.write(len(blob).to_bytes(8, "little") + blob)
            for key in order:
                if sources[key][0] != shard:  # one shard mapped at a time: its pages leave with it
                    shard, handle = sources[key][0], None
                    handle = safe_open(str(shard), framework="pt")
                tensor = _patched(names[key], handle.get_tensor(key), image_id, text_rows, resized)
                out.write(memoryview(tensor.contiguous().reshape(-1).view(_uint8()).numpy()))
    except SafetensorError as exc:
        raise ModelLoadError(f"weights of '{shard}' cannot be read ({first_line(exc)}); download it again") from None


def _uint8() -> Any:
    import torch

    return torch.uint8


def _patched(name: str, tensor: Any, image_id: int, text_rows: int, resized: dict[str, int]) -> Any:
    """The embedding with the image token's row set to the mean token row; rows added where needed."""
    import torch

    if name not in (EMBED, LM_HEAD):
        return tensor
    mean = tensor[:text_rows].float().mean(dim=0).to(tensor.dtype)
    if name in resized:
        extra = resized[name] - tensor.shape[0]
        tensor = torch.cat([tensor, mean.expand(extra, -1)])
    if name == EMBED:
        tensor = tensor.clone()
        tensor[image_id] = mean
    return tensor
