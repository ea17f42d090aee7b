"""The nano reference: a real `fast_vlm` model at tiny size, trained on nano-VQA.

The architecture is the real one (timm `fastvit_mci3` with RepMixer and attention stages in
training form, so reparameterisation has work to do; the FastVLM projector; a small Qwen2),
with a word-level tokenizer and a Qwen-style chat template wrapped as a `LlavaProcessor`. The
checkpoint is a normal directory that `AutoModelForImageTextToText` / `AutoProcessor` load
offline; it is built once per (recipe of this file) and cached in the user cache dir.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from harness.data.nano_vqa import IMAGE_SIZE

NANO_VERSION = "2"
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
# batch_size counts images; each brings ~3 questions (see training_data.VQABatcher).
TRAIN = {"steps": 2200, "batch_size": 32, "lr": 1e-3, "warmup": 100, "weight_decay": 0.01, "seed": 0,
         "eval_every": 400}


def fingerprint() -> str:
    """Identity of the nano recipe: a change to any setting builds a new checkpoint."""
    from harness.data.nano_vqa import GENERATOR_VERSION

    blob = json.dumps([NANO_VERSION, GENERATOR_VERSION, VISION_ARGS, TEXT_ARGS, TRAIN, IMAGE_SIZE],
                      sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def build_processor(image_size: int = IMAGE_SIZE, patch_size: int = PATCH) -> Any:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import CLIPImageProcessor, LlavaProcessor, PreTrainedTokenizerFast

    from harness.data.nano_vqa import vocabulary

    words = SPECIAL_TOKENS + ["user", "assistant", "system"] + vocabulary()
    vocab = {word: index for index, word in enumerate(dict.fromkeys(words))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>",
        bos_token=None, extra_special_tokens={"image_token": "<image>"},
    )
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


def ensure_nano(force: bool = False, progress: bool = True) -> Path:
    """Return the cached nano checkpoint, building (and training) it first if needed."""
    path = checkpoint_dir()
    if not force:
        if (path / "nano_report.json").exists():
            return path
        shipped = shipped_checkpoint()
        if shipped is not None:
            return shipped
    tmp = path.with_name(path.name + f".building-{int(time.time() * 1e6)}")
    report = train_nano(tmp, progress=progress)
    (tmp / "nano_report.json").write_text(json.dumps(report, indent=2))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def train_nano(out_dir: Path, progress: bool = True, train_overrides: dict | None = None) -> dict:
    """Train the nano model on nano-VQA train; save it; return timing and test accuracy."""
    import torch

    from harness.data.nano_vqa import EMPTY_CELL, load_nano_vqa
    from harness.models.fastvlm import LoadedModel
    from harness.suites.accuracy import evaluate_exact_match
    from harness.training import TrainConfig, train
    from harness.training_data import VQABatcher

    settings = {**TRAIN, **(train_overrides or {})}
    torch.manual_seed(settings["seed"])
    processor = build_processor()
    model = build_model(build_config(processor.tokenizer), seed=settings["seed"])
    start = time.perf_counter()
    batcher = VQABatcher(processor, load_nano_vqa("train"))
    heads = batcher.enable_auxiliary(model.config.vision_config.hidden_size, EMPTY_CELL + 1, 10)
    config = TrainConfig(steps=settings["steps"], batch_size=settings["batch_size"],
                         lr=settings["lr"], warmup=settings["warmup"],
                         weight_decay=settings["weight_decay"], seed=settings["seed"])
    validation = load_nano_vqa("validation").select(range(250))

    def validate(step: int) -> dict:
        scores = evaluate_exact_match(LoadedModel(model=model, processor=processor, source="nano"),
                                      validation, batch_size=125)
        return {"val_exact_match": scores["exact_match"], **{f"val_{k}": v for k, v in scores["per_kind"].items()}}

    history = train(model, batcher, config, progress=progress, description="training nano",
                    extra_parameters=list(heads.parameters()), evaluate=validate,
                    eval_every=settings["eval_every"])
    train_seconds = time.perf_counter() - start

    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    loaded = LoadedModel(model=model, processor=processor, source="nano")
    scores = evaluate_exact_match(loaded, load_nano_vqa("test"), batch_size=100)
    return {"fingerprint": fingerprint(), "train_seconds": round(train_seconds, 1),
            "final_loss": history[-1]["loss"], "test": scores,
            "validation": [row for row in history if "val_exact_match" in row],
            "threads": torch.get_num_threads()}
