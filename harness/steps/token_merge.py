"""Visual-token reduction after the encoder, before the projector.

FastVLM's encoder returns a (B, C, H, W) grid that `get_image_features` flattens into H*W tokens
for the projector; every one of them is a prefill position in the LLM. This step registers a
parameter-free `TokenMerge` module (`_token_merge.py`) under the vision tower plus a forward hook
that reduces that grid: 2x2 (or f x f) average or max pooling, or one-shot ToMe bipartite soft
matching (Bolya et al. 2023) on the output tokens. Nothing in the state dict changes, so saved weights load as
before; replay re-registers the module and hook.

Pooling uses `ceil_mode=True`: a grid that the factor does not divide keeps its last row/column
as a partial window (averaged over the cells that exist), e.g. nano's 4x4 grid at factor 3 → 2x2 = 4 tokens
(set `ceil_mode: false` to require an exact division instead). The prompt must hold exactly as
many `<image>` tokens as there are features, so the step sets `config.image_seq_length` and the
processor's `num_additional_image_tokens` (negative: the reduction against the H/patch x W/patch
grid the processor computes), which `save_pretrained` persists. A `resolution` step must come
before this one: the offset is computed for the image size in force when this step runs.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from harness.errors import StepError
from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext

MODULE_PREFIX = "token_merge"


class TokenMergeConfig(StepConfig):
    kind: Literal["token-merge"] = "token-merge"
    method: Literal["avg-pool", "max-pool", "tome"] = "avg-pool"
    factor: int = Field(2, ge=2, description="pooling window and stride on the token grid (pool methods)")
    ceil_mode: bool = Field(True, description="pool a partial last row/column when factor does not divide the grid")
    r: int = Field(0, ge=0, description="tokens to merge away (tome: r >= 1, at most half the tokens)")

    @model_validator(mode="after")
    def _method_fields(self) -> TokenMergeConfig:
        if self.targets and list(self.targets) != ["vision"]:
            raise ValueError("token-merge acts on the vision output only; drop 'targets' or use [vision]")
        if self.method == "tome" and self.r < 1:
            raise ValueError("method: tome needs r >= 1 (the number of tokens to merge away)")
        if self.method != "tome" and self.r:
            raise ValueError(f"r is for method: tome; method: {self.method} uses 'factor'")
        return self


def _hook(module: Any, args: Any, output: Any) -> Any:
    """Vision-tower forward hook: run every registered TokenMerge, in order, on the output grid."""
    merges = merges_of(module)
    if isinstance(output, tuple):
        grid = output[0]
        for merge in merges:
            grid = merge(grid)
        return (grid, *output[1:])
    for merge in merges:
        output.last_hidden_state = merge(output.last_hidden_state)
    return output


def merges_of(vision_tower: Any) -> list[Any]:
    return [m for name, m in vision_tower.named_children() if name.startswith(MODULE_PREFIX)]


def encoder_grid(model: Any) -> tuple[int, int]:
    """Token grid the processor assumes for the current image size (before any merge)."""
    height, width = model.image_size
    patch = model.processor.patch_size
    return height // patch, width // patch


@STEPS.register("token-merge", "reduce visual tokens after the encoder: 2x2 avg/max pooling or ToMe")
class TokenMergeStep(Step):
    Config = TokenMergeConfig
    default_targets: ClassVar[tuple[str, ...]] = ("vision",)
    examples: ClassVar[list[dict]] = [{"kind": "token-merge", "method": "avg-pool", "factor": 2},
                                      {"kind": "token-merge", "method": "max-pool", "factor": 2},
                                      {"kind": "token-merge", "method": "tome", "r": 3}]

    def apply(self, config: TokenMergeConfig, model: Any, ctx: StepContext) -> None:
        tower = model.vision
        merges = merges_of(tower)
        base_h, base_w = encoder_grid(model)
        height, width = base_h, base_w
        for merge in merges:
            height, width = merge.out_grid(height, width)
        tokens = height * width
        if config.method == "tome":  # r >= 1 with tome (and r = 0 with pooling) checked by the config
            if config.r > tokens // 2:
                raise StepError(f"step 'token-merge': tome needs 0 < r <= {tokens // 2} (half of {tokens} tokens); "
                                f"got r={config.r}")
        else:
            if merges and any(m.method == "tome" for m in merges):
                raise StepError("step 'token-merge': pooling after tome has no grid to pool; put pooling first")
            if min(height, width) < config.factor:
                raise StepError(f"step 'token-merge': the {height}x{width} token grid is too small for factor "
                                f"{config.factor}; use a smaller factor or a larger 'resolution'")
            if not config.ceil_mode and (height % config.factor or width % config.factor):
                raise StepError(f"step 'token-merge': factor {config.factor} does not divide the {height}x{width} "
                                f"token grid; set ceil_mode: true or change 'resolution'")
        from harness.steps._token_merge import TokenMerge

        merge = TokenMerge(config.method, config.factor, config.ceil_mode, config.r)
        tower.add_module(f"{MODULE_PREFIX}_{len(merges)}", merge)
        if not merges:
            tower.register_forward_hook(_hook)
        new_h, new_w = merge.out_grid(height, width)
        after = new_h * new_w
        model.processor.num_additional_image_tokens = after - base_h * base_w
        model.model.config.image_seq_length = after
        if model.visual_tokens != after:
            raise StepError(f"step 'token-merge': processor gives {model.visual_tokens} image tokens, "
                            f"expected {after}")
        how = f"r={config.r}" if config.method == "tome" else \
            f"{config.factor}x{config.factor}{' ceil' if config.ceil_mode else ''}"
        ctx.note(f"vision output {config.method} {how}: visual tokens {tokens} -> {after}")
