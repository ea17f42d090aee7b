"""A small, seeded training loop shared by the nano build (and, later, training steps).

AdamW with linear warm-up and cosine decay, gradient clipping, and a rich progress bar showing
loss and throughput. Deliberately plain: the model's own forward computes the loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Batcher(Protocol):
    """Supplies the loss for a list of sample indices (`len()` samples in all)."""

    def __len__(self) -> int: ...

    def loss(self, model: Any, indices: list[int]) -> Any: ...


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 50
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    seed: int = 0


def lr_lambda(config: TrainConfig):  # noqa: ANN201 - returns a schedule function
    def schedule(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return schedule


def train(model: Any, batcher: Batcher, config: TrainConfig, progress: bool = True,
          description: str = "training", extra_parameters: list[Any] | None = None,
          evaluate: Callable[[int], dict[str, float]] | None = None,
          eval_every: int = 0) -> list[dict[str, float]]:
    """Train in place; return the loss curve (one row per step, plus evaluation results)."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if config.steps <= 0:
        raise ValueError("training needs steps > 0")
    generator = torch.Generator().manual_seed(config.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    decay += [p for p in (extra_parameters or []) if p.ndim >= 2]
    no_decay += [p for p in (extra_parameters or []) if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config))
    model.train()
    history: list[dict[str, float]] = []
    order: list[int] = []
    start = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.0f} ex/s"),
               TimeElapsedColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task(description, total=config.steps, loss=float("nan"), rate=0.0)
        for step in range(config.steps):
            if len(order) < config.batch_size:
                order += torch.randperm(len(batcher), generator=generator).tolist()
            indices, order = order[: config.batch_size], order[config.batch_size :]
            loss = batcher.loss(model, indices)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(loss.detach())
            row = {"step": step, "loss": value, "lr": scheduler.get_last_lr()[0]}
            if evaluate is not None and eval_every and (step + 1) % eval_every == 0:
                model.eval()
                row.update(evaluate(step))
                model.train()
                bar.console.print(f"  step {step + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()
                                                                     if k not in ("step", "lr")))
            history.append(row)
            rate = (step + 1) * config.batch_size / (time.perf_counter() - start)
            bar.update(task, advance=1, loss=value, rate=rate)
    model.eval()
    return history
