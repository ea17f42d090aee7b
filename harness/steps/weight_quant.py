"""Weight-only INT4/INT8 quantization of Linear layers through Intel neural-compressor 3.x.

`rtn` rounds each weight group to the nearest code (no data). `gptq` quantizes column by column
and pushes each rounding error onto the not yet quantized columns, using a Hessian from
calibration activations. `awq` searches per-input-channel scales that protect the weights seen
by large activations (folded into the preceding norm / Linear where possible) and a clip ratio
per layer, then rounds. INC computes the codes; `_packed.PackedLinear` stores them packed
(INT4 two per byte, fp16 group scales, zero points only when asymmetric), so the variant's
safetensors file holds the real low-bit bytes. Activations and matmuls stay float.

GPTQ and AWQ work block by block on the LLM decoder (they need its stacked layers); chosen
Linear layers elsewhere (lm_head, projector, vision attention) are rounded with RTN, and the notes
say so.
On replay the recorded layers are rebuilt as empty `PackedLinear`s; no INC, no data.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import field_validator, model_validator

from harness.errors import StepError
from harness.models.fastvlm import MODULE_PATHS
from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext
from harness.steps._calibration import CalibrationSpec
from harness.steps._layers import check_group_size, check_ignore, linear_layers, replace_module

STEP = "weight-quant"
GROUP_SIZES = (-1, 16, 32, 64, 128)
#: FastVLM's decoder blocks (the prefix of every block's Linear names); `_blocks` gives any family's.
LLM_BLOCKS = f"{MODULE_PATHS['llm']}.layers."
#: AWQ scale absorption inside one Qwen2 decoder block: absorbing module -> absorbed Linear(s).
QWEN2_ABSORB = {"input_layernorm": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
                "self_attn.o_proj": "self_attn.o_proj",  # nothing to fold into: kept as an input scale
                "post_attention_layernorm": ["mlp.gate_proj", "mlp.up_proj"],
                "mlp.up_proj": "mlp.down_proj"}


class WeightQuantConfig(StepConfig):
    kind: Literal["weight-quant"] = "weight-quant"
    algorithm: Literal["rtn", "gptq", "awq"] = "rtn"
    bits: Literal[4, 8] = 4
    group_size: int = 32
    symmetric: bool = True
    ignore: list[str] = []
    calibration: CalibrationSpec | None = None

    @field_validator("group_size")
    @classmethod
    def _supported_group(cls, value: int) -> int:
        if value not in GROUP_SIZES:
            raise ValueError(f"group_size {value} is not supported; use one of {list(GROUP_SIZES)} "
                             "(-1 = one group per output channel)")
        return value

    @model_validator(mode="after")
    def _calibrated(self) -> WeightQuantConfig:
        if self.algorithm != "rtn" and self.calibration is None:
            raise ValueError(f"algorithm '{self.algorithm}' needs calibration data; add `calibration: {{dataset: "
                             "{name: nano-vqa, split: train}, items: 64}` or use algorithm: rtn")
        return self


def _describe(config: WeightQuantConfig) -> str:
    group = "per-channel" if config.group_size == -1 else f"g{config.group_size}"
    return f"INT{config.bits} {group} {'sym' if config.symmetric else 'asym'}"


@contextlib.contextmanager
def _inc_workspace() -> Iterator[str]:
    """INC writes `./nc_workspace` (and logs) into the cwd: run it inside a temporary directory."""
    import logging

    previous = os.getcwd()
    level = logging.getLogger("neural_compressor").level
    with tempfile.TemporaryDirectory(prefix="fastvlm-inc-") as tmp:
        os.chdir(tmp)
        try:
            yield tmp
        finally:
            os.chdir(previous)
            logging.getLogger("neural_compressor").setLevel(level)


def _inc() -> Any:
    from harness.errors import require

    module = require("neural_compressor.torch.quantization", "inc", f"step '{STEP}'")
    import logging

    logging.getLogger("neural_compressor").setLevel(logging.WARNING)
    return module


def _inc_config(cls: Any, names: list[str], config: WeightQuantConfig, **extra: Any) -> Any:
    """Global fp32 (skip) + one exact-name local config per chosen layer: nothing else is touched."""
    extra = {"use_layer_wise": False, "quant_lm_head": any(n.endswith("lm_head") for n in names), **extra}
    inc_config = cls(dtype="fp32", **extra)
    for name in names:
        inc_config.set_local(re.escape(name) + "$", cls(bits=config.bits, group_size=config.group_size,
                                                        use_sym=config.symmetric, **extra))
    return inc_config


@contextlib.contextmanager
def _restored_attributes(*modules: Any) -> Iterator[None]:
    """INC hangs `qconfig`, `save`, patched `forward`s ... on the modules it works on; take them off again."""
    before = [set(vars(module)) for module in modules]
    try:
        yield
    finally:
        for module, keys in zip(modules, before, strict=True):
            for key in set(vars(module)) - keys:
                delattr(module, key)


def _text_lm(loaded: Any) -> Any:
    """The LLM alone (decoder + lm_head) as one module, so INC finds the decoder blocks first."""
    import torch

    class TextLM(torch.nn.Module):
        def __init__(self, language_model: Any, lm_head: Any) -> None:
            super().__init__()
            self.language_model = language_model
            self.lm_head = lm_head

        def forward(self, inputs_embeds: Any, attention_mask: Any = None) -> Any:
            out = self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False)
            return self.lm_head(out.last_hidden_state)

    return TextLM(loaded.llm, loaded.lm_head)


def _llm_inputs(loaded: Any, batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the LLM receives for each calibration batch (image features already merged in)."""
    import torch

    class _Captured(Exception):
        pass

    captured: list[dict[str, Any]] = []

    def hook(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        captured.append({"inputs_embeds": kwargs["inputs_embeds"], "attention_mask": kwargs.get("attention_mask")})
        raise _Captured

    handle = loaded.llm.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.inference_mode():
            for batch in batches:
                with contextlib.suppress(_Captured):
                    loaded.model(**batch)
    finally:
        handle.remove()
    return [{k: v.clone() if v is not None else None for k, v in c.items()} for c in captured]


def _run_rtn(root: Any, names: list[str], config: WeightQuantConfig) -> None:
    inc = _inc()
    with _restored_attributes(root):
        inc.convert(inc.prepare(root, _inc_config(inc.RTNConfig, names, config)))


def _run_calibrated(loaded: Any, names: list[str], config: WeightQuantConfig, ctx: StepContext,
                    workspace: str) -> None:
    """GPTQ / AWQ over the LLM decoder blocks with the recipe's calibration data."""
    import torch

    from harness.steps._calibration import calibration_batches

    assert config.calibration is not None  # the config requires it for gptq / awq
    inputs = _llm_inputs(loaded, calibration_batches(loaded, config.calibration, STEP, ctx.data_dir))
    if not inputs:
        raise StepError(f"step '{STEP}': calibration produced no batches; give a non-empty dataset")
    inc = _inc()
    wrapper = _text_lm(loaded)
    decoder = loaded.family.module_paths["llm"]
    local = ["language_model" + n.removeprefix(decoder) for n in names]  # names inside the wrapper

    def run_fn(model: Any) -> None:
        for batch in inputs:
            model(**batch)

    touched = [wrapper.language_model, wrapper.lm_head, *wrapper.language_model.layers]
    with torch.no_grad(), _restored_attributes(*touched):
        if config.algorithm == "gptq":
            inc_config = _inc_config(inc.GPTQConfig, local, config, model_path=workspace, act_order=False)
            prepared = inc.prepare(wrapper, inc_config)
        else:
            inc_config = _inc_config(inc.AWQConfig, local, config, absorb_layer_dict=_absorb(loaded, names))
            prepared = inc.prepare(wrapper, inc_config, example_inputs=inputs[0]["inputs_embeds"])
        run_fn(prepared)
        inc.convert(prepared)


def _absorb(loaded: Any, names: list[str]) -> dict[str, Any]:
    """Qwen2 absorption map when every Linear of every block is chosen; else INC's own tracing."""
    layers = loaded.llm.layers
    blocks = _blocks(loaded)
    wanted = {f"{blocks}{i}.{leaf}" for i in range(len(layers))
              for targets in QWEN2_ABSORB.values() for leaf in ([targets] if isinstance(targets, str) else targets)}
    modules = {name for name, _ in loaded.model.named_modules()}
    norms = all(f"{blocks}0.{n}" in modules for n in ("input_layernorm", "post_attention_layernorm"))
    return dict(QWEN2_ABSORB) if norms and wanted <= set(names) else {}


def _blocks(loaded: Any) -> str:
    """The prefix of the decoder blocks' module names in `loaded`'s family (FastVLM: `LLM_BLOCKS`)."""
    return f"{loaded.family.module_paths['llm']}.layers."


def _check(config: WeightQuantConfig, loaded: Any, chosen: list[str]) -> None:
    check_ignore(STEP, loaded, config.ignore)
    if not chosen:
        raise StepError(f"step '{STEP}': nothing left to quantize (no Linear layer in targets after ignore "
                        f"{config.ignore}); change targets or ignore")
    check_group_size(STEP, loaded, chosen, config.group_size)


@STEPS.register(STEP, "INC weight-only INT4/INT8 (RTN, GPTQ, AWQ) on Linear layers, stored packed")
class WeightQuant(Step):
    Config = WeightQuantConfig
    shrinks_storage: ClassVar[bool] = True
    default_targets: ClassVar[tuple[str, ...]] = ("llm",)
    examples: ClassVar[list[dict]] = [
        {"kind": STEP, "algorithm": "rtn", "bits": 4, "group_size": 16},
        {"kind": STEP, "algorithm": "gptq", "bits": 4, "group_size": 16, "symmetric": False,
         "calibration": {"items": 8, "batch_size": 8, "dataset": {"name": "nano-vqa", "split": "validation"}}}]

    def apply(self, config: WeightQuantConfig, model: Any, ctx: StepContext) -> None:
        from harness.steps._packed import PackedLinear, from_inc

        layers = linear_layers(model, self.targets(config), config.ignore)
        chosen = [name for names in layers.values() for name in names]
        if ctx.replay:
            recorded = ctx.record.get("layers") or {n: {"input_scale": False} for n in chosen}
            for name, info in recorded.items():
                linear = model.model.get_submodule(name)
                replace_module(model.model, name, PackedLinear(
                    linear.in_features, linear.out_features, config.bits, config.group_size, config.symmetric,
                    bias=linear.bias is not None, input_scale=info["input_scale"]))
            ctx.note(f"{len(recorded)} Linear layers rebuilt as {_describe(config)} packed")
            return

        # INC's GPTQ/AWQ cover the decoder blocks only (its GPTQ lm_head path replaces nothing for a
        # top-level lm_head and feeds it pre-norm states); everything else chosen is rounded (RTN).
        _check(config, model, chosen)
        calibrated = [n for n in chosen if n.startswith(_blocks(model))] if config.algorithm != "rtn" else []
        rounded = [n for n in chosen if n not in calibrated]
        biased = {n: model.model.get_submodule(n).bias is not None for n in chosen}
        with _inc_workspace() as workspace:
            if calibrated:
                _run_calibrated(model, calibrated, config, ctx, workspace)
            if rounded:
                _run_rtn(model.model, rounded, config)

        record: dict[str, Any] = {}
        for name in chosen:
            module = model.model.get_submodule(name)
            if type(module).__name__ not in ("INCWeightOnlyLinear", "MulLinear"):
                raise StepError(f"step '{STEP}': neural-compressor left layer '{name}' unquantized "
                                f"({type(module).__name__}); add it to ignore")
            try:
                packed = from_inc(module, config.bits, config.group_size, config.symmetric, biased[name])
            except ValueError as exc:
                raise StepError(f"step '{STEP}': cannot pack layer '{name}': {exc}") from None
            replace_module(model.model, name, packed)
            record[name] = {"shape": [packed.out_features, packed.in_features],
                            "input_scale": packed.input_scale is not None}
        ctx.record.update({"layers": record, "bits": config.bits, "group_size": config.group_size,
                           "symmetric": config.symmetric, "algorithm": config.algorithm})
        for component, names in layers.items():
            if not names:
                ctx.note(f"{component}: no Linear layers, unchanged")
                continue
            by_algo = [f"{sum(n in calibrated for n in names)} via {config.algorithm.upper()}",
                       f"{sum(n in rounded for n in names)} via RTN"]
            how = ", ".join(part for part in by_algo if not part.startswith("0 "))
            scaled = sum(record[n]["input_scale"] for n in names)
            ctx.note(f"{component}: {len(names)} Linear layers -> {_describe(config)} packed ({how}"
                     + (f"; {scaled} keep an AWQ input scale" if scaled else "") + ")")
