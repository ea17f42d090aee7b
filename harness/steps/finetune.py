"""Plain supervised fine-tuning on a VQA dataset (cross-entropy on the answer tokens).

With `lora:` the chosen Linear layers get low-rank adapters through peft and only those train;
at the end the adapters are merged back into the weights (`merge_and_unload`), so the artifact
stays a plain variant of the base architecture. Training changes weights only: replay rebuilds
nothing, the saved weights carry the result.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import StepError
from harness.registries import STEPS
from harness.steps._base import Step, StepContext
from harness.steps._training import TrainStepConfig, batcher_for, run_training, training_rows

STEP = "finetune"


class LoraSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(8, gt=0)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)


class FinetuneConfig(TrainStepConfig):
    kind: Literal["finetune"] = "finetune"
    lora: LoraSpec | None = Field(None, description="train low-rank adapters on the targets' Linear layers only")
    ignore: list[str] = []


@STEPS.register(STEP, "supervised fine-tuning on a VQA dataset (optionally LoRA via peft, merged back)")
class Finetune(Step):
    Config = FinetuneConfig
    examples: ClassVar[list[dict]] = [
        {"kind": STEP, "steps": 2, "items": 24, "batch_size": 4},
        {"kind": STEP, "steps": 2, "items": 24, "batch_size": 4, "lr": 1e-2, "targets": ["llm"],
         "lora": {"r": 4}}]

    def apply(self, config: FinetuneConfig, model: Any, ctx: StepContext) -> None:
        if ctx.replay:
            ctx.note("fine-tuned weights (loaded from the variant)")
            return
        batcher = batcher_for(model, training_rows(config, STEP, ctx.data_dir), STEP)
        if config.lora is None:
            targets = set(self.targets(config))
            for name, parameter in model.model.named_parameters():
                parameter.requires_grad_(model.component_of(name) in targets and parameter.is_floating_point())
            try:
                run_training(config, model, batcher, ctx, STEP)
            finally:
                for parameter in model.model.parameters():
                    parameter.requires_grad_(parameter.is_floating_point())
            return
        self._lora(config, model, batcher, ctx)

    def _lora(self, config: FinetuneConfig, model: Any, batcher: Any, ctx: StepContext) -> None:
        from harness.errors import require
        from harness.steps._layers import linear_layers

        peft = require("peft", "train", f"step '{STEP}' with lora")
        names = [n for names in linear_layers(model, self.targets(config), config.ignore).values() for n in names]
        if not names:
            raise StepError(f"step '{STEP}': no Linear layer in targets {list(self.targets(config))} for LoRA")
        lora = peft.LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                               target_modules=names)
        wrapped = peft.get_peft_model(model.model, lora)  # injects adapters in place, freezes the rest
        try:
            run_training(config, model, batcher, ctx, STEP)
        finally:
            model.model = wrapped.merge_and_unload()
            for parameter in model.model.parameters():
                parameter.requires_grad_(True)
        ctx.note(f"{STEP}: LoRA r={config.lora.r} on {len(names)} Linear layers, merged into the weights")
