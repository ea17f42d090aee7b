"""Building the nano reference (harness.models.nano defines it): train on nano-VQA train, check on
the test split, save into the user cache dir. `harness run` builds it once, visibly, before any
worker needs it; `harness reference build` rebuilds it on request."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.models.nano import (
    CURRICULUM,
    CURRICULUM_TRAIN,
    TRAIN,
    build_config,
    build_model,
    build_processor,
    checkpoint_dir,
    fingerprint,
    shipped_checkpoint,
)


def ensure_nano(force: bool = False, progress: bool = True) -> Path:
    """Return the cached nano checkpoint, building (and training) it first if needed."""
    path = checkpoint_dir()
    if not force:
        if (path / "nano_report.json").exists():
            return path
        shipped = shipped_checkpoint()
        if shipped is not None:
            return shipped
    return build_into(path, lambda tmp: train_nano(tmp, progress=progress))


def build_into(path: Path, build: Callable[[Path], dict]) -> Path:
    """Run `build` into a fresh folder beside `path`, write its report, then move it into place: a
    build cut short never leaves a checkpoint that looks finished."""
    tmp = path.with_name(path.name + f".building-{int(time.time() * 1e6)}")
    report = build(tmp)
    (tmp / "nano_report.json").write_text(json.dumps(report, indent=2))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def train_nano(out_dir: Path, progress: bool = True, train_overrides: dict | None = None) -> dict:
    """Train the nano model on nano-VQA train, then its relation curriculum; save it; return timing
    and test accuracy."""
    import torch

    from harness.data.nano_vqa import EMPTY_CELL, load_nano_vqa
    from harness.training.batches import VQABatcher

    settings = {**TRAIN, **(train_overrides or {})}
    torch.manual_seed(settings["seed"])
    processor = build_processor()
    model = build_model(build_config(processor.tokenizer), seed=settings["seed"])
    start = time.perf_counter()
    train_split = load_nano_vqa("train")
    batcher = VQABatcher(processor, train_split)
    heads = batcher.enable_auxiliary(model.config.vision_config.hidden_size, EMPTY_CELL + 1, 10)
    report = fit_reference(model, processor, "nano", batcher, settings, out_dir, start, progress=progress,
                           extra_parameters=list(heads.parameters()),
                           then=lambda: run_curriculum(model, processor, CURRICULUM, train_split, progress,
                                                       every_row=batcher.without_auxiliary()))
    return {"fingerprint": fingerprint(), **report}


def curriculum_rows(train_split: Any, rows: str) -> Any:
    """The train rows a curriculum stage draws on (`CURRICULUM`'s `rows`)."""
    from harness.data.nano_vqa import FIRST_RELATIONS, relation_in

    if rows == "all":
        return train_split
    if rows == "relation":
        return train_split.filter(lambda kind: kind == "relation", input_columns="kind")
    if rows == "relation-first":
        return train_split.filter(lambda question: relation_in(question) in FIRST_RELATIONS, input_columns="question")
    raise ValueError(f"unknown curriculum rows {rows!r}; use all, relation or relation-first")


def run_curriculum(model: Any, processor: Any, curriculum: tuple[dict, ...], train_split: Any, progress: bool,
                   every_row: Any = None) -> list[dict]:
    """Each stage a short warm-up + cosine run of its own on its rows, LM loss only; returns what each
    stage trained on and its last loss (the build report keeps them). `every_row`: the batches of
    `train_split` when the caller has them (an "all" stage then skips processing it again)."""
    from harness.training import TrainConfig, train
    from harness.training.batches import VQABatcher

    done = []
    for index, stage in enumerate(curriculum):
        rows = curriculum_rows(train_split, stage["rows"])
        batcher = every_row if stage["rows"] == "all" and every_row is not None else VQABatcher(processor, rows)
        config = TrainConfig(steps=stage["steps"], batch_size=TRAIN["batch_size"], lr=CURRICULUM_TRAIN["lr"],
                             warmup=CURRICULUM_TRAIN["warmup"], weight_decay=TRAIN["weight_decay"], seed=index)
        history = train(model, batcher, config, progress=progress,
                        description=f"curriculum {index + 1}/{len(curriculum)}: {stage['rows']}")
        done.append({**stage, "train_rows": len(rows), "final_loss": history[-1]["loss"]})
    return done


def fit_reference(model: Any, processor: Any, source: str, batcher: Any, settings: dict, out_dir: Path,
                  start: float, progress: bool = True, extra_parameters: list | None = None,
                  validation_rows: int = 240, test_rows: int | None = None,
                  then: Callable[[], list[dict]] | None = None) -> dict:
    """The reference build's flow after the model and batches exist (nano's and every sibling's):
    train with `settings` (validated every `eval_every` steps), run `then` (nano's curriculum: its
    stages are reported and timed with the build), save, score the test split."""
    import torch

    from harness.data.nano_vqa import load_nano_vqa
    from harness.models.fastvlm import LoadedModel
    from harness.training import TrainConfig, train
    from harness.training.evaluate import evaluate_exact_match

    config = TrainConfig(steps=settings["steps"], batch_size=settings["batch_size"],
                         lr=settings["lr"], warmup=settings["warmup"],
                         weight_decay=settings["weight_decay"], seed=settings["seed"])
    validation = load_nano_vqa("validation").select(range(validation_rows))

    def validate(step: int) -> dict:
        scores = evaluate_exact_match(LoadedModel(model=model, processor=processor, source=source),
                                      validation, batch_size=125)
        return {"val_exact_match": scores["exact_match"], **{f"val_{k}": v for k, v in scores["per_kind"].items()}}

    history = train(model, batcher, config, progress=progress, description=f"training {source}",
                    extra_parameters=extra_parameters, evaluate=validate, eval_every=settings["eval_every"])
    stages = then() if then is not None else []
    train_seconds = time.perf_counter() - start

    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    loaded = LoadedModel(model=model, processor=processor, source=source)
    test = load_nano_vqa("test")
    scores = evaluate_exact_match(loaded, test if test_rows is None else test.select(range(test_rows)), batch_size=100)
    return {"train_seconds": round(train_seconds, 1),
            "final_loss": history[-1]["loss"], "test": scores,
            "validation": [row for row in history if "val_exact_match" in row],
            **({"curriculum": stages} if stages else {}),
            "threads": torch.get_num_threads()}
