"""Checkpoints in Apple's own `llava_qwen2` FastVLM layout, written from a config-built tiny
`fast_vlm` model: the inverse of the harness's mapping, written here independently (from
Apple's `mci.py`/`llava_arch.py` names), so a conversion back must give the original model.

The tiny tower has FastViTHD's module structure — timm `fastvit_mci3` with five stages, RepMixer
in 0-2, attention with a conditional positional encoding in 3-4, inference-mode (reparameterised)
blocks as released, or the training form — so every part of the real mapping is exercised.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

IMAGE_SIZE = 128  # 64x reduction: 2x2 visual tokens
SPECIALS = ["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>"]
WORDS = ["system", "user", "assistant", "you", "are", "a", "helpful", ".", "what", "colour", "is", "the", "shape",
         "?", "red", "blue", "circle", "square", "how", "many"]
TINY_VISION = {"layers": [2, 1, 1, 2, 1], "embed_dims": [16, 16, 32, 32, 64], "mlp_ratios": [2, 2, 2, 2, 2],
               "token_mixers": ["repmixer", "repmixer", "repmixer", "attention", "attention"],
               "downsamples": [False, True, True, True, True], "inference_mode": True}
TINY_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "max_position_embeddings": 256, "tie_word_embeddings": False}
#: timm name (one path segment) → Apple's name; `reparam_conv` is `lkb_reparam` only in the
#: large-kernel conv of a patch embedding (handled apart).
TO_APPLE = {"stem": "patch_embed", "final_conv": "conv_exp", "mlp": "convffn", "conv_kxk": "rbr_conv",
            "conv_scale": "rbr_scale", "identity": "rbr_skip", "large_conv": "lkb_origin"}
#: Squeeze-excite's timm `fc1`/`fc2` are Apple's `reduce`/`expand` (a ConvFFN's `fc1`/`fc2` keep their names).
SE_TO_APPLE = {"fc1": "reduce", "fc2": "expand"}


def tokenizer(with_image: bool) -> Any:
    """A word-level Qwen-like tokenizer; `<image>` (when present) is the last id, as after Apple's
    tokenizer gets it appended."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(SPECIALS + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.add_special_tokens(SPECIALS + (["<image>"] if with_image else []))
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<|endoftext|>", unk_token="<unk>",
                                   eos_token="<|im_end|>", bos_token=None)


def source_model(seed: int = 0, inference_mode: bool = True, padded_vocab: bool = True, rows: int | None = None) -> Any:
    """The original tiny `fast_vlm`: vocabulary rows padded past the tokenizer (as Qwen2's are)
    unless `padded_vocab` is false (then run it through `spliced_logits`), and a vision tower
    whose features are far from zero (layer scales 1, fan-in scaled weights, non-trivial
    BatchNorms) so a wrong vision mapping shows."""
    import torch
    from transformers import FastVlmConfig, FastVlmForConditionalGeneration, Qwen2Config, TimmWrapperConfig

    tok = tokenizer(with_image=True)
    image_id = tok.convert_tokens_to_ids("<image>")
    # Unpadded: the rows end with the last real token and `<image>` has no row, as in a vocabulary
    # that never had one (Apple's code splices image features in at a placeholder instead).
    rows = rows or (math.ceil(len(tok) / 64) * 64 + 64 if padded_vocab else len(tok) - 1)
    args = {**TINY_VISION, "inference_mode": inference_mode}
    vision = TimmWrapperConfig(architecture="fastvit_mci3", do_pooling=False, hidden_size=2 * args["embed_dims"][-1],
                               model_args=args)
    text = Qwen2Config(vocab_size=rows, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                       bos_token_id=None, **TINY_TEXT)
    config = FastVlmConfig(vision_config=vision, text_config=text, image_token_id=image_id,
                           image_seq_length=(IMAGE_SIZE // 64) ** 2)
    torch.manual_seed(seed)
    model = FastVlmForConditionalGeneration(config).eval()
    _liven_vision(model.model.vision_tower, seed)
    return model, tok


def _liven_vision(tower: Any, seed: int) -> None:
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in tower.named_parameters():
            if name.endswith("gamma"):
                param.fill_(1.0)
            elif param.dim() > 1:
                param.copy_(torch.randn(param.shape, generator=generator) / math.sqrt(param[0].numel()))
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1 + name.endswith(".weight"))
        for module in tower.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def network_indices(model_args: dict) -> dict[tuple[int, str], int]:
    """Apple's flat `network` index of each (stage, part): the downsample into a stage, then its
    positional encoding, then its blocks (FastViTHD: 0 | 1 2 | 3 4 | 5 6 7 | 8 9 10)."""
    index, where = 0, {}
    for stage in range(len(model_args["layers"])):
        if stage > 0 and (model_args["downsamples"][stage]
                          or model_args["embed_dims"][stage] != model_args["embed_dims"][stage - 1]):
            where[(stage, "downsample")], index = index, index + 1
        if stage >= 3:  # fastvit_mci3's positional encodings
            where[(stage, "pos_emb")], index = index, index + 1
        where[(stage, "blocks")], index = index, index + 1
    return where


def to_apple_key(key: str, model_args: dict) -> str:
    """One `fast_vlm` name → Apple's name."""
    if key.startswith("model.vision_tower.timm_model."):
        return "model.vision_tower.vision_tower.model." + _vision_to_apple(key[len("model.vision_tower.timm_model."):],
                                                                           model_args)
    for hf, apple in (("model.multi_modal_projector.linear_1.", "model.mm_projector.0."),
                      ("model.multi_modal_projector.linear_2.", "model.mm_projector.2."),
                      ("model.language_model.", "model.")):
        if key.startswith(hf):
            return apple + key[len(hf):]
    return key


def _vision_to_apple(key: str, model_args: dict) -> str:
    key = re.sub(r"\.gamma$", "", key)
    key = key.replace("downsample.proj.0.reparam_conv", "downsample.proj.0.lkb_reparam")
    key = key.replace("pos_emb.pos_enc", "pos_emb.pe")
    match = re.match(r"^stages\.(\d+)\.(downsample|pos_emb|blocks)\.(.*)$", key)
    if match:
        stage, part, rest = int(match.group(1)), match.group(2), match.group(3)
        key = f"network.{network_indices(model_args)[(stage, part)]}.{rest}"
    parts = key.split(".")
    return ".".join(SE_TO_APPLE.get(part, part) if i and parts[i - 1] == "se" else TO_APPLE.get(part, part)
                    for i, part in enumerate(parts))


def apple_state_dict(model: Any) -> dict[str, Any]:
    """The model's weights under Apple's names, plus MobileCLIP's unused `head.proj`."""
    import torch

    args = model.config.vision_config.model_args
    state = {to_apple_key(k, args): v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    state["model.vision_tower.vision_tower.model.head.proj"] = torch.randn(model.config.vision_config.hidden_size, 8)
    return state


def apple_config(model: Any, tower: str | None = None, **overrides: Any) -> dict[str, Any]:
    """config.json as Apple's checkpoints have it: Qwen2 fields plus LLaVA's mm_* fields."""
    text = model.config.text_config
    fields = {k: getattr(text, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                             "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                                             "rms_norm_eps", "vocab_size", "tie_word_embeddings", "hidden_act",
                                             "bos_token_id", "eos_token_id")}
    return {"architectures": ["LlavaQwen2ForCausalLM"], "model_type": "llava_qwen2", **fields,
            "rope_theta": text.rope_parameters["rope_theta"], "torch_dtype": "float32",
            "mm_hidden_size": model.config.vision_config.hidden_size, "mm_projector_type": "mlp2x_gelu",
            "mm_vision_tower": tower or f"mobileclip_l_{IMAGE_SIZE}", "mm_vision_select_layer": -2,
            "mm_vision_select_feature": "patch", "mm_patch_merge_type": "flat", "image_aspect_ratio": "pad",
            "mm_use_im_start_end": False, "mm_use_im_patch_token": False, "use_mm_proj": True, **overrides}


#: What a checkpoint's Python file does if anything imports it: leave a mark.
TRAP = ("import pathlib\npathlib.Path(__file__).with_name('EXECUTED').write_text('the checkpoint code ran')\n")


def write_qwen2_bpe_tokenizer(root: Path) -> int:
    """The tokenizer files Apple's checkpoints ship (Qwen2's: byte-level BPE `vocab.json` +
    `merges.txt`, `added_tokens.json`, `special_tokens_map.json`, a `Qwen2Tokenizer`
    tokenizer_config), from a tiny BPE trained here; returns the number of tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    core.train_from_iterator([" ".join(WORDS)] * 20, trainer)
    core.model.save(str(root))
    n = core.get_vocab_size()
    specials = {"<|endoftext|>": n, "<|im_start|>": n + 1, "<|im_end|>": n + 2}
    (root / "added_tokens.json").write_text(json.dumps(specials))
    (root / "special_tokens_map.json").write_text(json.dumps({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                                                              "additional_special_tokens": ["<|im_start|>",
                                                                                            "<|im_end|>"]}))
    decoder = {str(i): {"content": t, "special": True, "lstrip": False, "rstrip": False, "normalized": False,
                        "single_word": False} for t, i in specials.items()}
    (root / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "bos_token": None, "model_max_length": 8192, "added_tokens_decoder": decoder}))
    return n + 3


def write_apple_checkpoint(model: Any, root: Path, layout: str = "hub", shards: int = 1,
                           state: dict[str, Any] | None = None, bpe: bool = False, **config: Any) -> Path:
    """Write `model` in Apple's layout: `hub` (apple/FastVLM-*: custom code + auto_map, one file)
    or `stage3` (ml-fastvlm's llava-fastvithd_*_stage3: sharded with an index, trainer files);
    the word-level test tokenizer, or with `bpe` Qwen2's file set."""
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    state = apple_state_dict(model) if state is None else state
    cfg = apple_config(model, **config)
    keys = sorted(state)
    groups = [keys[i::shards] for i in range(shards)]
    if shards == 1:
        save_file({k: state[k] for k in keys}, str(root / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        for number, group in enumerate(groups, 1):
            name = f"model-{number:05d}-of-{shards:05d}.safetensors"
            save_file({k: state[k] for k in group}, str(root / name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(group, name))
        (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    if layout == "hub":
        cfg["auto_map"] = {"AutoConfig": "llava_qwen.LlavaConfig",
                           "AutoModelForCausalLM": "llava_qwen.LlavaQwen2ForCausalLM"}
        (root / "llava_qwen.py").write_text(TRAP)
    else:
        (root / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
        (root / "training_args.bin").write_bytes(b"\x80\x04 not to be unpickled")
    (root / "config.json").write_text(json.dumps(cfg, indent=2))
    (root / "generation_config.json").write_text(json.dumps({"eos_token_id": cfg["eos_token_id"]}))
    if bpe:
        write_qwen2_bpe_tokenizer(root)
    else:
        tokenizer(with_image=False).save_pretrained(root)
    return root


def spliced_logits(model: Any, inputs: Any, image_id: int) -> Any:
    """Logits the way LLaVA computes them for a vocabulary without an image token: text embedded,
    the projected image features written over the image positions, then the language model."""
    import torch

    mask = inputs["input_ids"] == image_id
    with torch.no_grad():
        embeds = model.get_input_embeddings()(inputs["input_ids"].masked_fill(mask, 0))
        features = model.model.get_image_features(inputs["pixel_values"]).pooler_output
        embeds = embeds.masked_scatter(mask[..., None], features)
        return model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]).logits
