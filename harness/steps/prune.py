"""Unstructured and semi-structured (N:M) weight pruning per component.

`method: magnitude` zeroes the smallest |W| of each layer (`torch.nn.utils.prune.l1_unstructured`);
`method: wanda` (Sun et al. 2023) scores |W_ij| * ||X_j||_2 with calibration activations and
zeroes the lowest scores within each output row; `method: "N:M"` (e.g. `2:4`) keeps the N
highest-scoring of every M consecutive input weights (NVIDIA's convention: 2:4 = two non-zeros
in four), scored by magnitude or Wanda. Masks are applied through `torch.nn.utils.prune` and
then made permanent (`prune.remove`), so the saved weights are plain dense tensors: zeros here
do NOT shrink dense storage or speed up dense kernels; they only show what sparsity costs in
accuracy. Replay has nothing to rebuild: the zeros are in the saved weights.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from harness.errors import StepError
from harness.models.fastvlm import is_plain_tensor
from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext
from harness.steps._calibration import CalibrationSpec
from harness.steps._layers import check_ignore, component_layers

NM = re.compile(r"^(\d+):(\d+)$")


class PruneConfig(StepConfig):
    kind: Literal["prune"] = "prune"
    method: str = Field("magnitude", pattern=r"^(magnitude|wanda|\d+:\d+)$",
                        description="magnitude | wanda | N:M (keep N of every M consecutive input weights)")
    sparsity: float | None = Field(None, gt=0, lt=1, description="fraction of weights zeroed per layer "
                                                                 "(magnitude, wanda): 0 < sparsity < 1; default 0.5; "
                                                                 "implied by N:M")
    score: Literal["magnitude", "wanda"] = Field("magnitude", description="what chooses the N:M survivors")
    ignore: list[str] = Field(["lm_head"], description="fnmatch patterns of module names left dense "
                                                       "(the LM head by default, as in Wanda/SparseGPT)")
    include_conv: bool = Field(False, description="also prune Conv2d weights (vision), not only Linear")
    calibration: CalibrationSpec | None = Field(None, description="activations for Wanda scores "
                                                                  "(default: 64 nano-vqa train items)")

    @model_validator(mode="after")
    def _method_fits(self) -> PruneConfig:
        nm = NM.match(self.method)
        if nm:
            keep, group = int(nm.group(1)), int(nm.group(2))
            if not 0 < keep < group:
                raise ValueError(f"method: N:M pattern '{self.method}' needs 0 < N < M (e.g. 2:4)")
            if self.sparsity is not None:
                raise ValueError(f"method {self.method} implies sparsity {1 - keep / group:g}; "
                                 "remove the sparsity field")
        elif self.score != "magnitude":
            raise ValueError("score only applies to N:M methods; use method: wanda instead")
        return self


def prunable_layers(model: Any, components: tuple[str, ...], ignore: list[str], include_conv: bool,
                    step: str) -> dict[str, dict[str, Any]]:
    """Component → {qualified name: module} of the weights to prune, after `ignore`."""
    import torch

    check_ignore(step, model, ignore)
    kinds: tuple[type, ...] = (torch.nn.Linear, torch.nn.Conv2d) if include_conv else (torch.nn.Linear,)
    found = component_layers(model, components, ignore, kinds)
    for modules in found.values():
        for qualified, module in modules.items():
            if not is_plain_tensor(module.weight):
                raise StepError(f"step '{step}': '{qualified}' is already quantized; prune before quantize")
    return found


def input_channel_norms(model: Any, modules: dict[str, Any], spec: CalibrationSpec | None, step: str,
                        data_dir: Any) -> dict[str, Any]:
    """||X_j||_2 over all calibration tokens (and pixels) for each module's input channel j."""
    import torch

    from harness.steps._calibration import calibration_batches, run_calibration

    sums: dict[str, Any] = {}

    def hook_for(name: str, module: Any):  # noqa: ANN202 - returns a hook
        def hook(_module: Any, args: tuple) -> None:
            x = args[0].detach().float()
            # Linear: channels last; Conv2d: channels in dim 1
            x = x.transpose(1, -1) if isinstance(module, torch.nn.Conv2d) else x
            squares = x.reshape(-1, x.shape[-1]).pow(2).sum(0)
            sums[name] = squares if name not in sums else sums[name] + squares
        return hook

    handles = [m.register_forward_pre_hook(hook_for(n, m)) for n, m in modules.items()]
    try:
        run_calibration(model, calibration_batches(model, spec or CalibrationSpec(), step, data_dir))
    finally:
        for handle in handles:
            handle.remove()
    missing = [n for n in modules if n not in sums]
    if missing:
        raise StepError(f"step '{step}': calibration never reached {missing[:3]}; prune another component")
    return {name: value.sqrt() for name, value in sums.items()}


def wanda_scores(module: Any, norms: Any) -> Any:
    """|W| * ||X_j|| broadcast to the weight's shape (grouped convs map rows to their input group)."""
    import torch

    weight = module.weight.detach().float().abs()
    if isinstance(module, torch.nn.Linear):
        return weight * norms[None, :]
    out_channels, in_per_group = weight.shape[:2]
    group = torch.arange(out_channels) // (out_channels // module.groups)
    index = group[:, None] * in_per_group + torch.arange(in_per_group)[None, :]
    return weight * norms[index].reshape(out_channels, in_per_group, *([1] * (weight.dim() - 2)))


def row_mask(scores: Any, sparsity: float) -> Any:
    """Zero the lowest-scoring `sparsity` fraction within each output row (Wanda's comparison group)."""
    import torch

    rows = scores.reshape(scores.shape[0], -1)
    k = round(rows.shape[1] * sparsity)
    mask = torch.ones_like(rows, dtype=torch.bool)
    if k:
        lowest = torch.topk(rows, k, dim=1, largest=False).indices
        mask.scatter_(1, lowest, False)
    return mask.reshape(scores.shape)


def nm_mask(scores: Any, keep: int, group: int) -> Any:
    """Keep the `keep` highest of every `group` consecutive input weights of each row."""
    import torch

    rows = scores.reshape(scores.shape[0], -1, group)
    mask = torch.zeros_like(rows, dtype=torch.bool)
    mask.scatter_(2, torch.topk(rows, keep, dim=2).indices, True)
    return mask.reshape(scores.shape)


@STEPS.register("prune", "unstructured (magnitude, Wanda) or N:M semi-structured weight pruning")
class Prune(Step):
    Config = PruneConfig
    default_targets: ClassVar[tuple[str, ...]] = ("llm",)
    examples: ClassVar[list[dict]] = [
        {"kind": "prune", "method": "magnitude", "sparsity": 0.5},
        {"kind": "prune", "method": "2:4", "targets": ["projector", "llm"], "ignore": []},
        {"kind": "prune", "method": "wanda", "sparsity": 0.3, "targets": ["vision", "llm"], "include_conv": True,
         "calibration": {"items": 8, "batch_size": 8, "dataset": {"name": "nano-vqa", "split": "validation"}}},
    ]

    def apply(self, config: PruneConfig, model: Any, ctx: StepContext) -> None:
        import torch
        from torch.nn.utils import prune

        nm = NM.match(config.method)
        sparsity = self._sparsity(config, nm)
        if ctx.replay:
            ctx.note("prune: nothing to rebuild; the zeros are in the saved weights")
            return
        layers = prunable_layers(model, self.targets(config), config.ignore, config.include_conv, "prune")
        chosen = {n: m for per in layers.values() for n, m in per.items()}
        if not chosen:
            raise StepError(f"step 'prune': no prunable layer in {list(layers)} after ignore {config.ignore}; "
                            "change targets or ignore (or set include_conv: true for the vision convs)")
        uses_wanda = config.method == "wanda" or (nm is not None and config.score == "wanda")
        norms = input_channel_norms(model, chosen, config.calibration, "prune", ctx.data_dir) if uses_wanda else {}
        if nm:
            keep, group = int(nm.group(1)), int(nm.group(2))
            for name, module in chosen.items():
                width = module.weight[0].numel()
                if width % group:
                    raise StepError(f"step 'prune': '{name}' has {width} inputs per row, not a multiple of "
                                    f"{group} for {config.method}; add it to ignore")
        with torch.no_grad():
            for name, module in chosen.items():
                if config.method == "magnitude":
                    prune.l1_unstructured(module, "weight", amount=sparsity)
                else:
                    scores = wanda_scores(module, norms[name]) if uses_wanda else module.weight.detach().float().abs()
                    mask = nm_mask(scores, keep, group) if nm else row_mask(scores, sparsity)
                    prune.custom_from_mask(module, "weight", mask)
                prune.remove(module, "weight")  # permanent: a plain tensor with zeros, no reparametrisation
        record = {}
        for component, per in layers.items():
            if not per:
                ctx.note(f"{component}: no prunable layers, unchanged")
                continue
            zeros = sum(int((m.weight == 0).sum()) for m in per.values())
            total = sum(m.weight.numel() for m in per.values())
            params = [p for root in model.component_modules(component).values() for p in root.parameters()]
            all_zeros = sum(int((p == 0).sum()) for p in params)
            all_total = sum(p.numel() for p in params)
            record[component] = {"layers": len(per), "sparsity": round(zeros / total, 6)}
            ctx.note(f"{component}: {len(per)} layers pruned ({config.method}"
                     f"{', ' + config.score if nm else ''}), {zeros / total:.1%} of their weights zero, "
                     f"{all_zeros / all_total:.1%} of all {component} parameters; dense storage and compute "
                     "unchanged (unstructured zeros need a sparse format or kernel to pay off)")
        ctx.record.update({"achieved": record})
        if nm:
            ctx.note(f"{config.method} pattern not checked with torch.sparse.to_sparse_semi_structured "
                     "(needs a CUDA GPU); the mask is exact by construction")

    @staticmethod
    def _sparsity(config: PruneConfig, nm: Any) -> float:
        """The fraction zeroed (the config has checked the pattern and the range)."""
        if nm:
            return 1 - int(nm.group(1)) / int(nm.group(2))
        return 0.5 if config.sparsity is None else config.sparsity
