"""The trainer shared by the nano build and the training steps (distill, qat, finetune).

`fit` runs a seeded AdamW loop with warm-up + cosine decay, gradient accumulation, optional
bf16/fp16 mixed precision, gradient checkpointing, checkpoints that resume exactly, early stop
on a validation metric, and DDP when launched under torchrun / accelerate. `train` is the old
entry point (returns the curve only); the nano build still uses it with its original defaults.
"""

from harness.training.checkpoint import latest_checkpoint
from harness.training.loop import (
    Batcher,
    TrainConfig,
    TrainingDivergedError,
    TrainResult,
    fit,
    lr_lambda,
    train,
)

__all__ = ["Batcher", "TrainConfig", "TrainResult", "TrainingDivergedError", "fit", "latest_checkpoint",
           "lr_lambda", "train"]
