"""Knowledge distillation of the compressed student (the model after earlier steps) from the
uncompressed base model as teacher.

Loss per batch = `kl_weight` x T² x KL(teacher ‖ student) of the temperature-T softened
distributions at the positions that predict answer tokens, + `ce_weight` x cross-entropy on the
reference answers, + `hidden_weight` x MSE between the projector outputs (the visual tokens
the LLM receives). Teacher and student each see their own processor's inputs (an earlier step
may have changed resolution or the visual-token count); the answer tokens line up because the
tokenizer is the same. Hidden matching needs equal projector-output shapes.

Training changes weights only: on replay nothing is rebuilt, the saved weights carry the result.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from harness.errors import StepError
from harness.registries import STEPS
from harness.steps._base import COMPONENTS, Step, StepContext
from harness.steps._training import TrainStepConfig, batcher_for, run_training, training_rows

STEP = "distill"


class DistillConfig(TrainStepConfig):
    kind: Literal["distill"] = "distill"
    teacher: str | None = Field(None, min_length=1,
                                description="teacher model reference; default: the recipe's base model")
    temperature: float = Field(2.0, gt=0)
    kl_weight: float = Field(1.0, ge=0)
    ce_weight: float = Field(0.0, ge=0, description="weight of plain cross-entropy on the reference answers")
    hidden_weight: float = Field(0.0, ge=0, description="weight of MSE matching at the projector output")

    @model_validator(mode="after")
    def _some_loss(self) -> DistillConfig:
        if self.targets and set(self.targets) != set(COMPONENTS):
            raise ValueError(f"distill trains every component, so targets {list(self.targets)} would be ignored; "
                             "remove targets (freeze nothing) or use finetune/qat, which take targets")
        if not (self.kl_weight or self.ce_weight or self.hidden_weight):
            raise ValueError("kl_weight, ce_weight and hidden_weight are all 0, so there is no loss to train; "
                             "give at least one of them a value > 0")
        return self


class DistillBatcher:
    """Teacher and student batches over the same rows; `loss` is the distillation objective."""

    def __init__(self, config: DistillConfig, student: Any, teacher: Any, rows: Any) -> None:
        self.config, self.teacher = config, teacher
        self.student_data = batcher_for(student, rows, STEP)
        self.teacher_data = batcher_for(teacher, rows, STEP)
        self.last_tokens = 0

    def __len__(self) -> int:
        return len(self.student_data)

    def check(self, student: Any) -> None:
        """Fail before training when the teacher cannot supervise this student."""
        import torch

        with torch.no_grad():
            s_logits, s_targets, s_hidden = self.student_data.answer_outputs(student, [0])
            t_logits, t_targets, t_hidden = self.teacher_data.answer_outputs(self.teacher.model, [0])
        if s_logits.shape[-1] != t_logits.shape[-1] or not torch.equal(s_targets, t_targets):
            raise StepError(f"step '{STEP}': teacher and student disagree on the vocabulary or the answer tokens "
                            f"(vocab {t_logits.shape[-1]} vs {s_logits.shape[-1]}); distil from a model with the "
                            "same tokenizer")
        if self.config.hidden_weight and s_hidden.shape != t_hidden.shape:
            raise StepError(f"step '{STEP}': hidden matching needs the student's projector output to have the "
                            f"teacher's shape, got {tuple(s_hidden.shape[1:])} vs {tuple(t_hidden.shape[1:])} "
                            "(an earlier step changed visual tokens or widths); set hidden_weight: 0")

    def loss(self, student: Any, images: list[int]) -> Any:
        import torch
        import torch.nn.functional as F

        c = self.config
        s_logits, targets, s_hidden = self.student_data.answer_outputs(student, images)
        self.last_tokens = self.student_data.last_tokens
        with torch.no_grad():
            t_logits, _, t_hidden = self.teacher_data.answer_outputs(self.teacher.model, images)
        t = c.temperature
        loss = s_logits.new_zeros((), dtype=torch.float32)
        if c.kl_weight:
            kl = F.kl_div(F.log_softmax(s_logits.float() / t, -1), F.log_softmax(t_logits.float() / t, -1),
                          log_target=True, reduction="batchmean")
            loss = loss + c.kl_weight * t * t * kl
        if c.ce_weight:
            loss = loss + c.ce_weight * F.cross_entropy(s_logits.float(), targets)
        if c.hidden_weight:
            loss = loss + c.hidden_weight * F.mse_loss(s_hidden.float(), t_hidden.float())
        return loss


def _teacher(config: DistillConfig, model: Any, ctx: StepContext) -> Any:
    """The base model of the recipe (or `teacher:`); the untouched model when distil is the first step."""
    from harness.models.loading import load_model

    if config.teacher:
        return load_model(config.teacher)
    if ctx.base_model and ctx.base_model.get("model"):
        base = ctx.base_model
        return load_model(base["model"], base.get("revision"), bool(base.get("trust_remote_code")))
    if ctx.applied == 1:  # nothing ran before: the student is still the base model
        from harness.models.fastvlm import LoadedModel

        return LoadedModel(model=copy.deepcopy(model.model).eval(), processor=copy.deepcopy(model.processor),
                           source=model.source)
    raise StepError(f"step '{STEP}': no teacher: this build does not know its base model; set `teacher:`")


@STEPS.register(STEP, "knowledge distillation from the base model: answer-token KL (+ CE, projector MSE)")
class Distill(Step):
    Config = DistillConfig
    examples: ClassVar[list[dict]] = [
        {"kind": STEP, "steps": 2, "items": 24, "batch_size": 4, "hidden_weight": 1.0, "ce_weight": 0.5}]

    def apply(self, config: DistillConfig, model: Any, ctx: StepContext) -> None:
        if ctx.replay:
            ctx.note("distilled weights (loaded from the variant)")
            return
        teacher = _teacher(config, model, ctx)
        for parameter in teacher.model.parameters():
            parameter.requires_grad_(False)
        teacher.model.eval()
        batcher = DistillBatcher(config, model, teacher, training_rows(config, STEP, ctx.data_dir))
        batcher.check(model.model)
        run_training(config, model, batcher, ctx, STEP)
