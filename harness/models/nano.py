"""The nano reference: a real `fast_vlm` model at tiny size, trained on nano-VQA.

The architecture is the real one (timm `fastvit_mci3` with RepMixer and attention stages in
training form, so reparameterisation has work to do; the FastVLM projector; a small Qwen2),
with a word-level tokenizer and a Qwen-style chat template wrapped as a `LlavaProcessor`. The
checkpoint is a normal directory that `AutoModelForImageTextToText` / `AutoProcessor` load
offline. This module defines it (architecture, processor, training settings, fingerprint) and
finds its checkpoint — shipped with the package, or built into the user cache dir by
`harness.training.nano` (`harness reference build`); loading never trains.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from harness.data.nano_vqa import IMAGE_SIZE

NANO_VERSION = "3"
SPECIAL_TOKENS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "<image>"]
# Qwen-style turns. Text parts are rendered before image parts: the visual tokens come after the
# question, so causal attention lets each visual token see what is asked (the tiny model learns
# colour/shape binding several times faster this way; full-size FastVLM puts the image first).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}\n"
    "{% endif %}{% endfor %}{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PATCH = 16  # the nano encoder downsamples 16x: one visual token per 16 px grid cell
VISION_ARGS = {
    "layers": [1, 2, 2],
    "embed_dims": [16, 32, 64],
    "mlp_ratios": [3, 3, 3],
    "token_mixers": ["repmixer", "repmixer", "attention"],
    "downsamples": [False, True, True],
    "inference_mode": False,
}
TEXT_ARGS = {
    "hidden_size": 128,
    "intermediate_size": 320,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
}
# batch_size counts images; each brings ~4 questions (see training_data.VQABatcher).
TRAIN = {"steps": 2800, "batch_size": 32, "lr": 1e-3, "warmup": 100, "weight_decay": 0.01, "seed": 0,
         "eval_every": 400}
# After TRAIN, a relation curriculum (nano only; no auxiliary heads). A relation and its opposite asked
# of the same pair pull the answer both ways, so the comparison never starts: trained jointly, relation
# stays at chance (0.52 on 1,200 fresh items). One direction per axis alone is learned in ~60 steps,
# the opposites then follow, and a last pass on every row keeps the other kinds.
# rows: "relation-first" (relation rows asking FIRST_RELATIONS), "relation", "all".
CURRICULUM = ({"rows": "relation-first", "steps": 300}, {"rows": "relation", "steps": 400},
              {"rows": "all", "steps": 300})
CURRICULUM_TRAIN = {"lr": 5e-4, "warmup": 20}


def fingerprint() -> str:
    """Identity of the nano recipe: a change to any setting builds a new checkpoint."""
    from harness.data.nano_vqa import GENERATOR_VERSION

    blob = json.dumps([NANO_VERSION, GENERATOR_VERSION, VISION_ARGS, TEXT_ARGS, TRAIN, IMAGE_SIZE, CURRICULUM,
                       CURRICULUM_TRAIN], sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def build_tokenizer(named: dict[str, str] | None = None, extra: tuple[str, ...] = ()) -> Any:
    """nano's word-level tokenizer. `named` (attribute → token) and `extra` special tokens, a nano
    sibling's own (`harness.models.siblings`), come after nano's whole vocabulary, so every nano word
    keeps its id in every sibling; without them this is nano's tokenizer exactly."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from harness.data.nano_vqa import vocabulary

    named = {"image_token": "<image>", **(named or {})}
    added = [token for token in dict.fromkeys([*named.values(), *extra]) if token not in SPECIAL_TOKENS]
    words = SPECIAL_TOKENS + ["user", "assistant", "system"] + vocabulary() + added
    vocab = {word: index for index, word in enumerate(dict.fromkeys(words))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    # Words, single digits (a number is read digit by digit), box coordinates such as 0.27 (one token
    # each) and punctuation; decoding fuses the tokens, so "4 7" reads "47" and a box "[0.27,0.30,…]".
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(r"[01]\.\d\d|\d|[a-z]+|[^\sa-z\d]"), behavior="isolated")])
    core.decoder = decoders.Fuse()
    core.add_special_tokens(SPECIAL_TOKENS + added)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>",
        bos_token=None, extra_special_tokens=named,
    )


def build_processor(image_size: int = IMAGE_SIZE, patch_size: int = PATCH) -> Any:
    from transformers import CLIPImageProcessor, LlavaProcessor

    tokenizer = build_tokenizer()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        do_center_crop=True, image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
        do_convert_rgb=True,
    )
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                          patch_size=patch_size, vision_feature_select_strategy="full",
                          chat_template=CHAT_TEMPLATE, image_token="<image>")


def build_config(tokenizer: Any, vision_args: dict | None = None, text_args: dict | None = None) -> Any:
    from transformers import FastVlmConfig, Qwen2Config, TimmWrapperConfig

    vision_args = {**VISION_ARGS, **(vision_args or {})}
    text_args = {**TEXT_ARGS, **(text_args or {})}
    vision = TimmWrapperConfig(architecture="fastvit_mci3", do_pooling=False,
                               hidden_size=2 * vision_args["embed_dims"][-1], model_args=vision_args)
    text = Qwen2Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                       eos_token_id=tokenizer.eos_token_id, bos_token_id=None, **text_args)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    config = FastVlmConfig(vision_config=vision, text_config=text, image_token_id=image_token_id,
                           image_seq_length=(IMAGE_SIZE // PATCH) ** 2)
    return config


def build_model(config: Any, seed: int = 0) -> Any:
    import torch
    from transformers import FastVlmForConditionalGeneration

    torch.manual_seed(seed)
    model = FastVlmForConditionalGeneration(config)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    return model


SHIPPED = Path(__file__).resolve().parents[1] / "builtin" / "nano"


def shipped_checkpoint() -> Path | None:
    """The checkpoint committed with the package, if it was built from this exact recipe."""
    report = SHIPPED / "nano_report.json"
    if report.exists() and json.loads(report.read_text()).get("fingerprint") == fingerprint():
        return SHIPPED
    return None


def checkpoint_dir() -> Path:
    from harness.paths import cache_dir

    return cache_dir() / "nano" / f"nano-{fingerprint()}"


def find_nano() -> Path:
    """The checkpoint of this nano recipe: built in the cache, else shipped; a one-line error otherwise."""
    from harness.errors import ModelLoadError

    path = checkpoint_dir()
    if (path / "nano_report.json").exists():
        return path
    shipped = shipped_checkpoint()
    if shipped is not None:
        return shipped
    raise ModelLoadError(f"the nano reference {fingerprint()} is not built (the shipped checkpoint is from another "
                         "nano recipe); build it with `harness reference build` (about 5 minutes on 2 cores)")
