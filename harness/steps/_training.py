"""What the training steps (distill, qat, finetune) share: their budget/optimizer fields, the
training data (the suites' `datasets` loading, train split of nano-VQA by default), validation
during training, checkpoints under the variant's work folder, and the curve in the step record.

Training changes weights, so on replay these steps rebuild structure only (qat: packed layers);
the saved weights carry what training learned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from harness.data.sources import DatasetSpec
from harness.errors import StepError
from harness.steps._base import StepConfig, StepContext
from harness.training.loop import budget_problem

MAX_CURVE_POINTS = 200


class TrainStepConfig(StepConfig):
    """Budget (`steps` and/or `minutes`), data and optimizer settings of a training step."""

    steps: int | None = Field(None, description="optimizer steps (cosine schedule over them)")
    minutes: float | None = Field(None, description="wall-clock budget; alone it means constant lr after warm-up")
    dataset: DatasetSpec = DatasetSpec(name="nano-vqa", split="train")
    items: int | None = Field(None, gt=0, description="use only the first N rows (after a seeded shuffle)")
    batch_size: int = Field(16, gt=0, description="images per optimizer step (each with all its questions)")
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(5e-4, gt=0)
    warmup: int = Field(10, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    gradient_checkpointing: bool = False
    seed: int = Field(0, ge=0, lt=2**64, description="data order and initialisation (torch and datasets: "
                                                      "0 <= seed < 2**64)")
    checkpoint_every: int = Field(50, ge=0, description="0 = no checkpoints")
    eval_items: int = Field(0, ge=0, description="validation items scored every eval_every steps (0 = none)")
    eval_every: int = Field(50, gt=0)
    eval_dataset: DatasetSpec = DatasetSpec(name="nano-vqa", split="validation")
    early_stop_patience: int | None = Field(None, gt=0, description="stop after N evaluations without gain")

    @model_validator(mode="after")
    def _budget(self) -> TrainStepConfig:
        # steps/minutes carry no Field bound: budget_problem is the one rule (and message) for > 0
        problem = budget_problem(self.steps, self.minutes)
        if problem:
            raise ValueError(problem)
        if self.early_stop_patience and not self.eval_items:
            raise ValueError("early_stop_patience needs eval_items > 0 (a validation metric to watch)")
        if self.grad_accum > self.batch_size:
            raise ValueError(f"grad_accum {self.grad_accum} is larger than batch_size {self.batch_size}: each "
                             "optimizer step splits batch_size images into grad_accum micro-batches, so use "
                             "grad_accum <= batch_size")
        return self


def training_rows(config: TrainStepConfig, step: str, data_dir: Path | None) -> Any:
    """The training split through `datasets`, checked for the VQA columns, shuffled and cut."""
    from harness.steps._calibration import step_rows
    from harness.training.batches import REQUIRED_COLUMNS

    return step_rows(config.dataset, config.items, config.seed, step, data_dir, REQUIRED_COLUMNS, "training")


def batcher_for(loaded: Any, rows: Any, step: str) -> Any:
    from harness.errors import DataError
    from harness.training.batches import VQABatcher

    try:
        return VQABatcher(loaded.processor, rows)
    except DataError as exc:
        raise StepError(f"step '{step}': {exc}") from None


def run_training(config: TrainStepConfig, loaded: Any, batcher: Any, ctx: StepContext, step: str) -> Any:
    """Train `loaded.model` with `batcher.loss`; curve and timings go into the step record."""
    from harness.training import TrainConfig, TrainingDivergedError, fit

    checkpoints = None
    if ctx.work_dir is not None and config.checkpoint_every:
        checkpoints = str(Path(ctx.work_dir) / f"{ctx.applied:02d}-{step}")
    train_config = TrainConfig(
        steps=config.steps, max_seconds=config.minutes * 60 if config.minutes else None,
        batch_size=min(config.batch_size, len(batcher)), grad_accum=config.grad_accum, lr=config.lr,
        warmup=config.warmup, weight_decay=config.weight_decay, seed=config.seed, precision=config.precision,
        gradient_checkpointing=config.gradient_checkpointing, checkpoint_dir=checkpoints,
        checkpoint_every=config.checkpoint_every if checkpoints else 0, resume=checkpoints is not None,
        eval_every=config.eval_every if config.eval_items else 0,
        early_stop_metric="val_exact_match" if config.early_stop_patience else None,
        patience=config.early_stop_patience or 3)
    evaluate = _validation(config, loaded, ctx) if config.eval_items else None
    try:
        result = fit(loaded.model, batcher, train_config, progress=False, description=step, evaluate=evaluate)
    except TrainingDivergedError as exc:
        raise StepError(f"step '{step}': {exc}") from None
    ctx.record["training"] = {
        "step": step, "steps": len(result.history), "seconds": round(result.seconds, 2),
        "tokens_per_s": round(result.tokens_per_second, 1), "stopped": result.stopped,
        "resumed_from": result.resumed_from, "final_loss": result.history[-1]["loss"],
        "curve": _thin(result.history)}
    how = f"{len(result.history)} steps in {result.seconds:.0f} s ({result.tokens_per_second:.0f} tok/s)"
    if result.stopped != "budget":
        how += f", stopped by {result.stopped}"
    if result.resumed_from:
        how += f", resumed from step {result.resumed_from}"
    ctx.note(f"{step}: {how}, loss {result.history[0]['loss']:.3f} -> {result.history[-1]['loss']:.3f}")
    return result


def _validation(config: TrainStepConfig, loaded: Any, ctx: StepContext) -> Any:
    from harness.data.sources import load_split
    from harness.training.evaluate import evaluate_exact_match

    rows = load_split(config.eval_dataset, ctx.data_dir)
    rows = rows.select(range(min(config.eval_items, len(rows))))

    def evaluate(_step: int) -> dict[str, float]:
        return {"val_exact_match": evaluate_exact_match(loaded, rows, batch_size=64)["exact_match"]}

    return evaluate


def _thin(history: list[dict[str, float]]) -> list[dict[str, float]]:
    """At most ~MAX_CURVE_POINTS rows for the manifest/report; every evaluation row and the last kept."""
    every = max(1, len(history) // MAX_CURVE_POINTS)
    keep = [row for i, row in enumerate(history)
            if i % every == 0 or i == len(history) - 1 or any(k.startswith("val_") for k in row)]
    return [{k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in keep]
