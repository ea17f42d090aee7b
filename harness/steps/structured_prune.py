"""Structured pruning that really shrinks the model: attention heads, MLP channels, decoder layers,
FastViT blocks.

Unlike `prune`, this removes rows/columns/modules, so parameter count, saved size and compute
drop. Heads and MLP channels are removed in equal numbers from every decoder layer (which ones
may differ per layer), so `config.json` still describes every layer (`num_attention_heads`,
`num_key_value_heads`, explicit `head_dim`, `intermediate_size`, `num_hidden_layers`,
`layer_types`, vision `model_args.layers`) and the variant even loads with `from_pretrained`.
Importance is weight magnitude, or calibration activations when `calibration` is given. The
decision (what was removed, per layer, in the numbering at the time of the step) goes into
`ctx.record`; replay applies exactly that decision to the base skeleton so the saved tensors load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from harness.errors import StepError
from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext
from harness.steps._calibration import CalibrationSpec

STEP = "step 'structured-prune'"
COMPONENT = {"heads": "llm", "mlp": "llm", "layers": "llm", "vision-blocks": "vision"}
#: The field listing explicit units for each `what` (mlp has none: amount only).
EXPLICIT = {"heads": "heads", "layers": "layers", "vision-blocks": "blocks"}
BLOCK_ID = re.compile(r"^\d+\.\d+$")
Index = Annotated[int, Field(ge=0)]


class StructuredPruneConfig(StepConfig):
    kind: Literal["structured-prune"] = "structured-prune"
    what: Literal["heads", "mlp", "layers", "vision-blocks"]
    amount: float | None = Field(None, gt=0, lt=1, description="fraction of units to remove (per layer for "
                                                               "heads/mlp), 0 < amount < 1")
    layers: list[Index] | None = Field(None, min_length=1,
                                       description="what: layers — decoder layer indices to drop")
    heads: list[Index] | None = Field(None, min_length=1,
                                      description="what: heads — head-unit indices to drop in every layer")
    blocks: list[str] | None = Field(None, min_length=1,
                                     description="what: vision-blocks — 'stage.block' ids to drop, e.g. '1.0'")
    head_unit: Literal["kv-group", "query"] = Field(
        "kv-group", description="kv-group: a KV head with its query heads (shrinks the KV cache); "
                                "query: query heads, the same number from each KV group")
    calibration: CalibrationSpec | None = Field(None, description="rank by activations instead of weights")

    @field_validator("blocks")
    @classmethod
    def _block_ids(cls, blocks: list[str] | None) -> list[str] | None:
        for text in blocks or []:
            if not BLOCK_ID.match(text):
                raise ValueError(f"block id '{text}' is not 'stage.block' (two indices, e.g. '1.0')")
        return blocks

    @model_validator(mode="after")
    def _one_choice(self) -> StructuredPruneConfig:
        component = COMPONENT[self.what]
        if self.targets and list(self.targets) != [component]:
            raise ValueError(f"what: {self.what} applies to the {component} component only; "
                             f"set targets: [{component}] or leave targets out")
        for what, name in EXPLICIT.items():
            if getattr(self, name) is not None and what != self.what:
                raise ValueError(f"field '{name}' belongs to what: {what}, not {self.what}; remove it")
        given = getattr(self, EXPLICIT[self.what]) if self.what in EXPLICIT else None
        if (self.amount is None) == (given is None):
            field = EXPLICIT.get(self.what, "amount (mlp takes amount only)")
            raise ValueError(f"give exactly one of amount or {field}")
        return self


def _params(model: Any, component: str) -> int:
    return sum(p.numel() for root in model.component_modules(component).values() for p in root.parameters())


def _slice(linear: Any, dim: int, keep: Any) -> None:
    """Keep rows (dim 0) or columns (dim 1) `keep` of a Linear, in place."""
    import torch

    with torch.no_grad():
        linear.weight = torch.nn.Parameter(linear.weight.index_select(dim, keep).clone())
        if dim == 0 and linear.bias is not None:
            linear.bias = torch.nn.Parameter(linear.bias.index_select(0, keep).clone())
    if dim == 0:
        linear.out_features = len(keep)
    else:
        linear.in_features = len(keep)


def _lowest(scores: list[float], count: int) -> list[int]:
    """Indices of the `count` lowest scores (stable: ties go to the lower index)."""
    return sorted(sorted(range(len(scores)), key=lambda i: (scores[i], i))[:count])


def _count(amount: float, total: int, unit: str) -> int:
    """How many of `total` units `amount` (0 < amount < 1, checked by the config) removes."""
    count = round(amount * total)
    if count >= total:
        raise StepError(f"{STEP}: amount {amount} would remove all {total} {unit}; use a smaller amount")
    if count == 0:
        raise StepError(f"{STEP}: amount {amount} of {total} {unit} removes nothing; use at least {1 / total:.2g}")
    return count


def _explicit(indices: list[int], total: int, unit: str) -> list[int]:
    bad = [i for i in indices if i >= total]  # negative indices are refused by the config
    if bad:
        raise StepError(f"{STEP}: {unit} index {bad[0]} is out of range (0..{total - 1})")
    chosen = sorted(set(indices))
    if len(chosen) >= total:
        raise StepError(f"{STEP}: removing {unit} {chosen} would remove all {total}; keep at least one")
    return chosen


def _calibrate(model: Any, config: StructuredPruneConfig, ctx: StepContext, modules: dict[str, Any],
               outputs: bool = False) -> dict[str, Any]:
    """Per module: input-channel L2 norms, or (outputs=True) the relative change the module makes."""
    if not outputs:
        from harness.steps.prune import input_channel_norms

        return input_channel_norms(model, modules, config.calibration, "structured-prune", ctx.data_dir)
    from harness.steps._calibration import calibration_batches, run_calibration

    change: dict[str, list[float]] = {name: [0.0, 0.0] for name in modules}

    def hook_for(name: str):  # noqa: ANN202 - returns a hook
        def hook(_module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            x = (args[0] if args else kwargs["hidden_states"]).float()
            y = (output[0] if isinstance(output, tuple) else output).float()
            change[name][0] += float((y - x).pow(2).sum())
            change[name][1] += float(x.pow(2).sum())
        return hook

    handles = [m.register_forward_hook(hook_for(n), with_kwargs=True) for n, m in modules.items()]
    try:
        run_calibration(model, calibration_batches(model, config.calibration, "structured-prune", ctx.data_dir))
    finally:
        for handle in handles:
            handle.remove()
    return {name: (num / den) ** 0.5 if den else 0.0 for name, (num, den) in change.items()}


@dataclass(frozen=True)
class _HeadShape:
    """A decoder layer's attention layout before pruning: query heads, KV heads, head width."""

    heads: int
    kv: int
    head_dim: int

    @property
    def group(self) -> int:
        """Query heads per KV head."""
        return self.heads // self.kv

    def units(self, head_unit: str) -> int:
        """Removable units per layer: KV groups (a KV head with its queries), or query positions in a group."""
        return self.kv if head_unit == "kv-group" else self.group

    def query_heads(self, head_unit: str, unit: int) -> range:
        """The query heads of one unit: a KV group's, or the unit-th query of every group."""
        if head_unit == "kv-group":
            return range(unit * self.group, (unit + 1) * self.group)
        return range(unit, self.heads, self.group)


def _choose_heads(config: StructuredPruneConfig, model: Any, ctx: StepContext, layers: Any,
                  shape: _HeadShape) -> dict[int, list[int]]:
    """Layer index → the head units to remove: the recipe's `heads`, or the `amount` lowest-scoring."""
    units = shape.units(config.head_unit)
    if units == 1:
        other = "query" if config.head_unit == "kv-group" else "kv-group"
        raise StepError(f"{STEP}: with {shape.heads} heads and {shape.kv} KV heads there is one {config.head_unit} "
                        f"unit per layer, so none can be removed; use head_unit: {other}")
    count = _count(config.amount, units, f"{config.head_unit} units") if config.amount is not None else None
    fixed = _explicit(config.heads, units, config.head_unit) if config.heads is not None else None
    if fixed is not None:
        return {index: fixed for index in range(len(layers))}
    norms = {}
    if config.calibration is not None:
        norms = _calibrate(model, config, ctx, {str(i): layer.self_attn.o_proj for i, layer in enumerate(layers)})
    return {index: _lowest(_head_scores(layer.self_attn, norms.get(str(index)), config.head_unit, shape), count)
            for index, layer in enumerate(layers)}


def _head_scores(attn: Any, norms: Any, head_unit: str, shape: _HeadShape) -> list[float]:
    """Importance of each head unit of one attention block. With calibration `norms` (o_proj's input
    channel norms): what the unit writes through o_proj. Without: weight norms of its q and o_proj
    slices, plus its k and v rows for a KV group."""
    o_cols = attn.o_proj.weight.detach().float().norm(dim=0)  # per input column of o_proj
    if norms is not None:
        o_cols = o_cols * norms
    q_rows = attn.q_proj.weight.detach().float().norm(dim=1)
    k_rows = attn.k_proj.weight.detach().float().norm(dim=1)
    v_rows = attn.v_proj.weight.detach().float().norm(dim=1)
    scores = []
    for unit in range(shape.units(head_unit)):
        cols = [h * shape.head_dim + d for h in shape.query_heads(head_unit, unit) for d in range(shape.head_dim)]
        score = float(o_cols[cols].sum()) if norms is not None else float(q_rows[cols].norm() + o_cols[cols].norm())
        if head_unit == "kv-group" and norms is None:
            kv_rows = slice(unit * shape.head_dim, (unit + 1) * shape.head_dim)
            score += float(k_rows[kv_rows].norm() + v_rows[kv_rows].norm())
        scores.append(score)
    return scores


def _keep_heads(attn: Any, drop: set[int], head_unit: str, shape: _HeadShape) -> None:
    """Slice one attention block down to the head units not in `drop` (q/k/v rows, o_proj columns)."""
    import torch

    group, head_dim = shape.group, shape.head_dim
    if head_unit == "kv-group":
        kept_kv = [g for g in range(shape.kv) if g not in drop]
        kept_q = [h for g in kept_kv for h in range(g * group, (g + 1) * group)]
    else:
        kept_kv = list(range(shape.kv))
        kept_q = [h for h in range(shape.heads) if h % group not in drop]
    rows = torch.tensor([h * head_dim + d for h in kept_q for d in range(head_dim)])
    kv_rows = torch.tensor([g * head_dim + d for g in kept_kv for d in range(head_dim)])
    _slice(attn.q_proj, 0, rows)
    _slice(attn.o_proj, 1, rows)
    _slice(attn.k_proj, 0, kv_rows)
    _slice(attn.v_proj, 0, kv_rows)
    attn.num_key_value_groups = len(kept_q) // len(kept_kv)
    attn.head_dim = head_dim


def _norm(t: Any) -> float:
    return float(t.detach().float().norm())


@STEPS.register("structured-prune", "remove attention heads, MLP channels, decoder layers or FastViT blocks")
class StructuredPrune(Step):
    Config = StructuredPruneConfig
    shrinks_storage: ClassVar[bool] = True
    default_targets: ClassVar[tuple[str, ...]] = ("llm",)
    examples: ClassVar[list[dict]] = [
        {"kind": "structured-prune", "what": "heads", "heads": [1], "head_unit": "query"},
        {"kind": "structured-prune", "what": "mlp", "amount": 0.25},
        {"kind": "structured-prune", "what": "layers", "layers": [1]},
        {"kind": "structured-prune", "what": "vision-blocks", "blocks": ["1.0"]},
    ]

    def targets(self, config: StructuredPruneConfig) -> tuple[str, ...]:
        return (COMPONENT[config.what],)

    def apply(self, config: StructuredPruneConfig, model: Any, ctx: StepContext) -> None:
        component = COMPONENT[config.what]  # targets, amount and the explicit lists: checked by the config
        before = _params(model, component)
        getattr(self, "_" + config.what.replace("-", "_"))(config, model, ctx)
        after = _params(model, component)
        ctx.note(f"{component}: parameters {before:,} -> {after:,} ({(after - before) / before:+.1%})")

    # --- attention heads -------------------------------------------------------------------
    def _heads(self, config: StructuredPruneConfig, model: Any, ctx: StepContext) -> None:
        text = model.model.config.text_config
        layers = model.llm.layers
        shape = _HeadShape(heads=text.num_attention_heads, kv=text.num_key_value_heads,
                           head_dim=getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads)
        if ctx.replay:
            removed = {int(k): v for k, v in ctx.record["removed"].items()}
        else:
            removed = _choose_heads(config, model, ctx, layers, shape)
            ctx.record.update({"head_unit": config.head_unit, "removed": {str(k): v for k, v in removed.items()}})
        for index, layer in enumerate(layers):
            _keep_heads(layer.self_attn, set(removed[index]), config.head_unit, shape)
        heads, kv, group = shape.heads, shape.kv, shape.group
        new_kv = kv - len(removed[0]) if config.head_unit == "kv-group" else kv
        new_heads = new_kv * (group if config.head_unit == "kv-group" else group - len(removed[0]))
        text.head_dim = shape.head_dim  # no longer hidden_size // num_attention_heads
        text.num_attention_heads, text.num_key_value_heads = new_heads, new_kv
        ctx.note(f"llm: attention heads {heads} -> {new_heads}, KV heads {kv} -> {new_kv} per layer "
                 f"({config.head_unit} units removed per layer: "
                 f"{'; '.join(f'{k}: {v}' for k, v in removed.items())})")

    # --- MLP channels ----------------------------------------------------------------------
    def _mlp(self, config: StructuredPruneConfig, model: Any, ctx: StepContext) -> None:
        import torch

        text = model.model.config.text_config
        layers = model.llm.layers
        width = text.intermediate_size
        if ctx.replay:
            removed = {int(k): v for k, v in ctx.record["removed"].items()}
        else:
            count = _count(config.amount, width, "MLP channels")
            norms = {}
            if config.calibration is not None:
                norms = _calibrate(model, config, ctx, {str(i): layer.mlp.down_proj for i, layer in enumerate(layers)})
            removed = {}
            for index, layer in enumerate(layers):
                mlp = layer.mlp
                down = mlp.down_proj.weight.detach().float().norm(dim=0)
                if norms:  # Wanda-style: what each channel actually writes, on calibration data
                    scores = down * norms[str(index)]
                else:  # SwiGLU output ~ |gate.x| * |up.x| * |down column|
                    scores = (mlp.gate_proj.weight.detach().float().norm(dim=1)
                              * mlp.up_proj.weight.detach().float().norm(dim=1) * down)
                removed[index] = _lowest(scores.tolist(), count)
            ctx.record.update({"removed": {str(k): v for k, v in removed.items()}})
        for index, layer in enumerate(layers):
            drop = set(removed[index])
            keep = torch.tensor([c for c in range(width) if c not in drop])
            _slice(layer.mlp.gate_proj, 0, keep)
            _slice(layer.mlp.up_proj, 0, keep)
            _slice(layer.mlp.down_proj, 1, keep)
            layer.mlp.intermediate_size = len(keep)
        text.intermediate_size = width - len(removed[0])
        ctx.note(f"llm: MLP channels {width} -> {text.intermediate_size} in each of {len(layers)} layers")

    # --- decoder layers --------------------------------------------------------------------
    def _layers(self, config: StructuredPruneConfig, model: Any, ctx: StepContext) -> None:
        import torch

        text = model.model.config.text_config
        decoder = model.llm
        total = len(decoder.layers)
        if ctx.replay:
            removed = list(ctx.record["removed"])
        elif config.layers is not None:
            removed = _explicit(config.layers, total, "layer")
        else:
            count = _count(config.amount, total, "decoder layers")
            if config.calibration is not None:  # ShortGPT-style: layers that change the residual least go
                change = _calibrate(model, config, ctx, {str(i): m for i, m in enumerate(decoder.layers)}, outputs=True)
                scores = [change[str(i)] for i in range(total)]
            else:  # what each layer writes into the residual stream
                scores = [_norm(m.self_attn.o_proj.weight) + _norm(m.mlp.down_proj.weight) for m in decoder.layers]
            removed = _lowest(scores, count)
        if not ctx.replay:
            ctx.record.update({"removed": removed})
        kept = [i for i in range(total) if i not in set(removed)]
        decoder.layers = torch.nn.ModuleList([decoder.layers[i] for i in kept])
        for new_index, layer in enumerate(decoder.layers):
            layer.self_attn.layer_idx = new_index  # the KV cache is indexed by position in the stack
        text.layer_types = [text.layer_types[i] for i in kept]
        text.num_hidden_layers = len(kept)
        ctx.note(f"llm: decoder layers {total} -> {len(kept)} (removed {removed})")

    # --- FastViT blocks --------------------------------------------------------------------
    def _vision_blocks(self, config: StructuredPruneConfig, model: Any, ctx: StepContext) -> None:
        import torch

        tower = model.vision.timm_model
        stages = list(tower.stages)
        ids = [(s, b) for s, stage in enumerate(stages) for b in range(len(stage.blocks))]
        if ctx.replay:
            removed = [tuple(x) for x in ctx.record["removed"]]
        elif config.blocks is not None:
            removed = []
            for text in config.blocks:  # 'stage.block' form checked by the config
                parts = text.split(".")
                if (int(parts[0]), int(parts[1])) not in ids:
                    raise StepError(f"{STEP}: vision block '{text}' is out of range; blocks are "
                                    f"{', '.join(f'{s}.{b}' for s, b in ids)}")
                removed.append((int(parts[0]), int(parts[1])))
            removed = sorted(set(removed))
            if len(removed) >= len(ids):
                raise StepError(f"{STEP}: removing every vision block leaves no encoder; keep at least one")
        else:
            count = _count(config.amount, len(ids), "vision blocks")
            if config.calibration is not None:  # relative change each block makes to its input
                blocks = {f"{s}.{b}": stages[s].blocks[b] for s, b in ids}
                change = _calibrate(model, config, ctx, blocks, outputs=True)
                scores = [change[f"{s}.{b}"] for s, b in ids]
            else:  # layer scales gate what each residual branch adds
                scores = [self._gain(stages[s].blocks[b]) for s, b in ids]
            removed = [ids[i] for i in _lowest(scores, count)]
        if not ctx.replay:
            ctx.record.update({"removed": [list(x) for x in removed]})
        drop = set(removed)
        for s, stage in enumerate(stages):
            stage.blocks = torch.nn.Sequential(*[blk for b, blk in enumerate(stage.blocks) if (s, b) not in drop])
        args = model.model.config.vision_config.model_args
        before = list(args["layers"])
        args["layers"] = [len(stage.blocks) for stage in stages]
        ctx.note(f"vision: blocks per stage {before} -> {args['layers']} "
                 f"(removed {', '.join(f'{s}.{b}' for s, b in removed)})")

    @staticmethod
    def _gain(block: Any) -> float:
        """Mean |layer scale| summed over the block's residual branches (data-free importance)."""
        gammas = [p.detach().float().abs().mean() for name, p in block.named_parameters() if name.endswith("gamma")]
        return float(sum(gammas)) if gammas else _norm(next(block.parameters()))
