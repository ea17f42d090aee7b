"""The training loop: seeded AdamW, warm-up + cosine, accumulation, mixed precision, DDP.

Plain on purpose: the batcher computes the loss (`batcher.loss(model, indices)`), the loop only
orders data, steps the optimizer, keeps the curve, writes checkpoints and decides when to stop.
Its defaults reproduce the original nano-build loop operation for operation (the shipped nano
weights depend on it): fp32, no accumulation, one process, no checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from harness.errors import ConfigError, HarnessError
from harness.models.fastvlm import named_module


class TrainingDivergedError(HarnessError):
    """The loss became NaN/inf. Checkpoints written before `step` stay on disk."""

    def __init__(self, step: int, value: float, checkpoint_dir: str | None) -> None:
        self.step = step
        kept = f"; checkpoints so far are kept in {checkpoint_dir}" if checkpoint_dir else ""
        super().__init__(f"training diverged: loss became {value} at step {step}{kept}; "
                         "lower lr, raise warmup or use precision fp32")


class Batcher(Protocol):
    """Supplies the loss for a list of sample indices (`len()` samples in all)."""

    def __len__(self) -> int: ...

    def loss(self, model: Any, indices: list[int]) -> Any: ...


def budget_problem(steps: int | None, minutes: float | None) -> str | None:
    """Why a training budget would train nothing, or None. One rule for a recipe's training step
    (reported with file:line when the recipe is read) and for direct callers of the trainer."""
    if steps is None and minutes is None:
        return "training needs a budget: give steps or minutes"
    if steps is not None and steps <= 0:
        return f"a training budget of {steps} steps trains nothing; give steps > 0"
    if minutes is not None and minutes <= 0:
        return f"a training budget of {minutes:g} minutes trains nothing; give minutes > 0"
    return None


@dataclass(frozen=True)
class TrainConfig:
    """What to train for and how. `steps` and/or `max_seconds` is the budget (one is required)."""

    steps: int | None = None
    batch_size: int = 32  # global batch: split over grad_accum micro-batches x processes
    lr: float = 1e-3
    warmup: int = 50
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    seed: int = 0
    grad_accum: int = 1
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    gradient_checkpointing: bool = False
    max_seconds: float | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    resume: bool = False
    eval_every: int = 0
    early_stop_metric: str | None = None
    early_stop_mode: Literal["max", "min"] = "max"
    patience: int = 3

    def __post_init__(self) -> None:
        problem = budget_problem(self.steps, None if self.max_seconds is None else self.max_seconds / 60)
        if problem:
            raise ConfigError(problem)
        if self.grad_accum < 1 or self.batch_size < self.grad_accum:
            raise ConfigError(f"grad_accum {self.grad_accum} must be >= 1 and <= batch_size {self.batch_size}")
        if self.checkpoint_every and not self.checkpoint_dir:
            raise ConfigError("checkpoint_every needs a checkpoint_dir")


@dataclass
class TrainResult:
    history: list[dict[str, float]]
    seconds: float = 0.0
    tokens: int = 0
    examples: int = 0
    stopped: str = "budget"  # budget | time | early-stop
    resumed_from: int | None = None
    checkpoints: list[str] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def lr_lambda(config: TrainConfig):  # noqa: ANN201 - returns a schedule function
    """Linear warm-up, then cosine to 5 % of lr over `steps`; constant when only time is given."""
    def schedule(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        if config.steps is None:
            return 1.0
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return schedule


def enable_gradient_checkpointing(model: Any, enable: bool = True) -> None:
    """transformers' checkpointing on the decoder layers; timm's on the vision stages."""
    new_api = hasattr(model, "activation_checkpointing_enable")  # transformers >= 5.x names
    if enable:
        kwargs = {"use_reentrant": False}
        if new_api:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        (model.activation_checkpointing_disable if new_api else model.gradient_checkpointing_disable)()
    try:
        timm_model = getattr(named_module(model, "vision"), "timm_model", None)
    except AttributeError:  # not a FastVLM (or no vision tower): nothing for timm to checkpoint
        timm_model = None
    if timm_model is not None and hasattr(timm_model, "set_grad_checkpointing"):
        timm_model.set_grad_checkpointing(enable)


def train_mode(model: Any) -> None:
    """Training mode, except frozen BatchNorms (LoRA, frozen components) keep their statistics."""
    import torch

    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in module.parameters(recurse=False)):
            module.eval()


def _autocast(precision: str, device: Any) -> Any:
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def train(model: Any, batcher: Batcher, config: TrainConfig, progress: bool = True,
          description: str = "training", extra_parameters: list[Any] | None = None,
          evaluate: Callable[[int], dict[str, float]] | None = None,
          eval_every: int = 0) -> list[dict[str, float]]:
    """Train in place; return the loss curve (one row per step, plus evaluation results)."""
    if eval_every:
        from dataclasses import replace

        config = replace(config, eval_every=eval_every)
    return fit(model, batcher, config, progress=progress, description=description,
               extra_parameters=extra_parameters, evaluate=evaluate).history


def fit(model: Any, batcher: Batcher, config: TrainConfig, progress: bool = True, description: str = "training",
        extra_parameters: list[Any] | None = None,
        evaluate: Callable[[int], dict[str, float]] | None = None) -> TrainResult:
    """Train `model` in place (leaves it in eval mode) and return the curve with timings."""
    import torch

    from harness.training.distributed import init_from_env, loss_runner

    world = init_from_env()
    device = next(model.parameters()).device
    _check_setup(config, device, world)
    generator = torch.Generator().manual_seed(config.seed)
    extra = [p for p in (extra_parameters or []) if p.requires_grad]
    optimizer, scheduler, scaler = _optimization(model, extra, config)
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    run_loss, no_sync = loss_runner(model, batcher, extra, world)
    session = _Session(model=model, batcher=batcher, config=config, world=world, device=device, extra=extra,
                       generator=generator, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                       run_loss=run_loss, no_sync=no_sync)
    result = TrainResult(history=[])
    session.resume(result)
    train_mode(model)
    start = time.perf_counter() - session.state["elapsed"]
    try:
        _run_steps(session, result, evaluate, progress and world.rank == 0, description, start)
    finally:
        if config.gradient_checkpointing:
            enable_gradient_checkpointing(model, enable=False)
        model.eval()
    result.seconds = time.perf_counter() - start
    result.tokens, result.examples = session.state["tokens"], session.state["examples"]
    return result


def _check_setup(config: TrainConfig, device: Any, world: Any) -> None:
    """What `TrainConfig` cannot check alone: the device (fp16) and the number of processes."""
    if config.precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device (it uses a gradient scaler); use bf16 on CPU")
    if config.batch_size < config.grad_accum * world.size:
        raise ConfigError(f"batch_size {config.batch_size} is smaller than grad_accum x processes "
                          f"({config.grad_accum} x {world.size})")


def _optimization(model: Any, extra: list[Any], config: TrainConfig) -> tuple[Any, Any, Any]:
    """AdamW (no weight decay on biases and norms: parameters under 2-D), the warm-up + cosine
    schedule, and a gradient scaler for fp16 (None otherwise)."""
    import torch

    trainable = [p for _, p in model.named_parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2] + [p for p in extra if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2] + [p for p in extra if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config))
    scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None
    return optimizer, scheduler, scaler


@dataclass
class _Session:
    """What one `fit` call trains with, and the parts of a step: drawing data, the micro-batches
    and the optimizer step, resuming from and writing checkpoints. `state` is what a checkpoint
    keeps (step, data order, curve, early-stop bookkeeping, elapsed time, counters)."""

    model: Any
    batcher: Batcher
    config: TrainConfig
    world: Any
    device: Any
    extra: list[Any]
    generator: Any
    optimizer: Any
    scheduler: Any
    scaler: Any
    run_loss: Callable[[list[int]], Any]
    no_sync: Callable[[], Any]
    state: dict[str, Any] = field(default_factory=lambda: {
        "step": 0, "order": [], "history": [], "best": None, "bad_evals": 0, "elapsed": 0.0, "tokens": 0,
        "examples": 0})

    def resume(self, result: TrainResult) -> None:
        """Continue from the latest checkpoint when asked to and one exists."""
        from harness.training import checkpoint as ckpt

        if not (self.config.resume and self.config.checkpoint_dir):
            return
        latest = ckpt.latest_checkpoint(self.config.checkpoint_dir)
        if latest is not None:
            self.state = ckpt.load(latest, self.model, self.extra, self.optimizer, self.scheduler, self.generator,
                                   self.scaler)
            result.resumed_from = self.state["step"]

    def draw(self, order: list[int]) -> tuple[list[int], list[int]]:
        """The next global batch of sample indices and the order left: seeded epochs, drawn in turn."""
        import torch

        if len(order) < self.config.batch_size:
            order += torch.randperm(len(self.batcher), generator=self.generator).tolist()
        return order[: self.config.batch_size], order[self.config.batch_size :]

    def step(self, step: int, indices: list[int]) -> float:
        """One optimizer step on `indices`: this process's micro-batches (gradients accumulate; DDP
        syncs on the last), unscale and clip, step optimizer and schedule. Returns the mean loss
        over micro-batches and processes."""
        import torch

        from harness.training.distributed import all_mean, rank_shards

        shards = rank_shards(indices, self.world, self.config.grad_accum)
        losses = [self._micro_batch(step, part, last=micro == len(shards) - 1) for micro, part in enumerate(shards)]
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return all_mean(sum(losses) / len(losses), self.world)

    def _micro_batch(self, step: int, part: list[int], last: bool) -> float:
        """Forward (under autocast) and backward on one micro-batch; a NaN/inf loss stops training."""
        import torch

        config = self.config
        with contextlib.nullcontext() if last else self.no_sync():
            with _autocast(config.precision, self.device):
                loss = self.run_loss(part)
            if not torch.isfinite(loss.detach()):
                raise TrainingDivergedError(step, loss.item(), config.checkpoint_dir)
            scaled = loss / config.grad_accum if config.grad_accum > 1 else loss
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        value = float(loss.detach())
        self.state["tokens"] += int(getattr(self.batcher, "last_tokens", 0))
        self.state["examples"] += len(part)
        return value

    def checkpoint(self, step: int, order: list[int], elapsed: float, result: TrainResult) -> None:
        from harness.training import checkpoint as ckpt

        self.state.update(step=step, order=order, elapsed=elapsed)
        path = ckpt.save(self.config.checkpoint_dir, self.state, self.model, self.extra, self.optimizer,
                         self.scheduler, self.generator, self.scaler, self.world)
        if path:
            result.checkpoints.append(str(path))


def _run_steps(session: _Session, result: TrainResult, evaluate: Callable[[int], dict[str, float]] | None,
               show: bool, description: str, start: float) -> None:
    """Step until the budget, the time limit or early stopping ends training, with a progress bar;
    fills `result.history` and `result.stopped`."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    config, state = session.config, session.state
    history: list[dict[str, float]] = state["history"]
    order: list[int] = state["order"]
    step = state["step"]
    total = config.steps if config.steps is not None else math.inf
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.0f} ex/s"),
               TextColumn("{task.fields[tps]:.0f} tok/s"), TimeElapsedColumn())
    with Progress(*columns, disable=not show, transient=False) as bar:
        task = bar.add_task(description, total=config.steps, completed=step, loss=float("nan"), rate=0.0, tps=0.0)
        while step < total:
            indices, order = session.draw(order)
            value = session.step(step, indices)
            row = {"step": step, "loss": value, "lr": session.scheduler.get_last_lr()[0]}
            step += 1
            early = _evaluate(evaluate, config, session.model, row, state, step, bar)
            history.append(row)
            elapsed = time.perf_counter() - start
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                session.checkpoint(step, order, elapsed, result)
            bar.update(task, advance=1, loss=value, rate=state["examples"] / max(elapsed, 1e-9),
                       tps=state["tokens"] / max(elapsed, 1e-9))
            if early:
                result.stopped = "early-stop"
                break
            if config.max_seconds is not None and elapsed >= config.max_seconds:
                result.stopped = "time"
                break
    result.history = history


def _evaluate(evaluate: Callable[[int], dict[str, float]] | None, config: TrainConfig, model: Any,
              row: dict[str, float], state: dict[str, Any], step: int, bar: Any) -> bool:
    """Run the validation callback when due; True when early stopping says stop."""
    if evaluate is None or not config.eval_every or step % config.eval_every:
        return False
    model.eval()
    row.update(evaluate(step - 1))
    train_mode(model)
    bar.console.print(f"  step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()
                                                      if k not in ("step", "lr")))
    metric = config.early_stop_metric
    if metric is None:
        return False
    if metric not in row:
        raise ConfigError(f"early_stop_metric '{metric}' is not among the evaluation results {sorted(row)}")
    value = row[metric] if config.early_stop_mode == "max" else -row[metric]
    if state["best"] is None or value > state["best"]:
        state["best"], state["bad_evals"] = value, 0
        return False
    state["bad_evals"] += 1
    return state["bad_evals"] >= config.patience
