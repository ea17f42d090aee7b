"""Static INT8 (activations and weights) of the vision encoder and projector through PT2E.

Each target component is captured with `torch.export` (batch dimension dynamic; image size
fixed), annotated by torchao's `X86InductorQuantizer` (uint8 per-tensor activations, int8
per-channel symmetric weights, Conv+BatchNorm folded), calibrated on real processed inputs
(`calibration_batches`), converted (`convert_pt2e`: int8 weight constants + quantize/dequantize
nodes) and put back in the model in place of the original module, so generation is unchanged.

Storage is real INT8: the converted graph's int8 weight constants, per-channel scales and zero
points and the remaining float tensors (biases, un-fused norms) are plain buffers saved in the
safetensors file; the float weights it no longer uses are deleted. The per-tensor activation
scales/zero points are Python scalars inside the graph, so they go into the step record. Replay
exports the skeleton again, converts it after one dummy batch, patches in the recorded
activation parameters, and the loaded tensors overwrite the rest: bit-exact with the build.

Not for the LLM: its decoder runs with a dynamic sequence length and a mutable KV cache, which
this export + static per-tensor calibration flow does not cover; use `quantize` (dynamic INT8)
or weight-only quantization there. The graphs run the quantize/dequantize reference arithmetic
in eager PyTorch: storage shrinks 4x, but speed-ups need a lowering (Inductor / oneDNN), which
is not done here.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from harness.errors import ModelLoadError, StepError
from harness.models.fastvlm import MODULE_PATHS
from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext
from harness.steps._calibration import CalibrationSpec
from harness.steps._layers import replace_module

STEP = "static-int8"
SUPPORTED = ("vision", "projector")
QPARAM_OPS = ("quantize_per_tensor", "dequantize_per_tensor")


class StaticInt8Config(StepConfig):
    kind: Literal["static-int8"] = "static-int8"
    calibration: CalibrationSpec | None = Field(
        None, description="inputs for the activation observers (default: 64 nano-vqa train items)")

    @model_validator(mode="after")
    def _no_llm(self) -> StaticInt8Config:
        # a model (not field) validator: the recipe reader rewords field errors on `targets`
        if self.targets and "llm" in self.targets:
            raise ValueError("static-int8 covers vision and projector only (the LLM's dynamic sequence "
                             "length and KV cache are not exportable for static INT8); set targets to a "
                             "subset of [vision, projector], and use step 'quantize' or a weight-only step for the llm")
        return self


def is_static_int8(module: Any) -> bool:
    return type(module).__name__ == "StaticInt8Graph"


def _drop_no_ops(gm: Any) -> None:
    """Remove `x + 0` (timm's MobileOne adds a literal 0 when a branch is absent; the X86 quantizer's
    conv+add pattern asserts on a non-tensor operand) and eval-mode dropout (what
    `move_exported_model_to_eval` would do, without its seconds of pattern re-exporting)."""
    import torch

    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.kwargs:
            continue
        zero_add = (node.target == torch.ops.aten.add.Tensor and len(node.args) == 2
                    and isinstance(node.args[1], (int, float)) and node.args[1] == 0)
        eval_dropout = node.target == torch.ops.aten.dropout.default and node.args[2] is False
        if zero_add or eval_dropout:
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.recompile()


def _fold_batchnorms(gm: Any) -> None:
    """Fold Conv+BatchNorm as prepare_pt2e does, then turn every remaining (standalone, eval) BatchNorm
    into a per-channel scale and shift. Why: `convert_pt2e` runs a QAT conv-bn folding pass whenever a
    BatchNorm node is left, which re-exports ~100 patterns (minutes on 2 cores) and changes nothing here."""
    import torch
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    _fuse_conv_bn_(gm)
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target != torch.ops.aten.batch_norm.default or node.args[5]:
            continue
        x, weight, bias, mean, var = node.args[:5]
        eps = node.args[7]
        values = [getattr_node_value(gm, n) for n in (weight, bias, mean, var)]
        if values[2] is None or values[3] is None:
            continue
        rank = node.meta["val"].dim() if "val" in node.meta else 4
        channels = values[2].shape[0]
        w = values[0] if values[0] is not None else torch.ones(channels)
        b = values[1] if values[1] is not None else torch.zeros(channels)
        scale = w * torch.rsqrt(values[3] + eps)
        shift = b - values[2] * scale
        shape = [channels] + [1] * (rank - 2)
        names = []
        for kind, tensor in (("scale", scale), ("shift", shift)):
            name = f"_bn_{kind}_{count}"
            gm.register_buffer(name, tensor.detach().reshape(shape).clone())
            names.append(name)
        count += 1
        with gm.graph.inserting_before(node):
            scale_node = gm.graph.get_attr(names[0])
            shift_node = gm.graph.get_attr(names[1])
            scaled = gm.graph.call_function(torch.ops.aten.mul.Tensor, (x, scale_node))
            shifted = gm.graph.call_function(torch.ops.aten.add.Tensor, (scaled, shift_node))
        shifted.meta = dict(node.meta)
        scaled.meta = dict(node.meta)
        fake = node.meta.get("val")
        if fake is not None and getattr(fake, "fake_mode", None) is not None:  # quantizers read shapes from meta
            scale_node.meta["val"] = fake.fake_mode.from_tensor(getattr(gm, names[0]))
            shift_node.meta["val"] = fake.fake_mode.from_tensor(getattr(gm, names[1]))
        node.replace_all_uses_with(shifted)
        gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.recompile()


def getattr_node_value(gm: Any, node: Any) -> Any:
    """The tensor a `get_attr` node reads (None for a missing optional argument)."""
    if node is None:
        return None
    owner_name, _, attr = node.target.rpartition(".")
    return getattr(gm.get_submodule(owner_name) if owner_name else gm, attr)


def _drop_unused_tensors(gm: Any) -> None:
    """Delete the float weights the converted graph no longer reads (they would be saved otherwise)."""
    used = {node.target for node in gm.graph.nodes if node.op == "get_attr"}
    names = [n for n, _ in gm.named_parameters(remove_duplicate=False)]
    names += [n for n, _ in gm.named_buffers(remove_duplicate=False)]
    for name in names:
        if name not in used:
            owner_name, _, attr = name.rpartition(".")
            owner = gm.get_submodule(owner_name) if owner_name else gm
            delattr(owner, attr)


def _qparam_nodes(gm: Any) -> list[Any]:
    return [n for n in gm.graph.nodes if n.op == "call_function" and any(op in str(n.target) for op in QPARAM_OPS)
            and not hasattr(n.args[1], "op")]


def _quantize_graph(module: Any, inputs: list[Any], component: str) -> Any:
    """export → prepare (X86InductorQuantizer) → observe `inputs` → convert; unused floats dropped."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    example = inputs[0]
    example = torch.cat([example, example])[:2] if example.shape[0] < 2 else example[:2]  # avoid 0/1 specialising
    batch = torch.export.Dim("batch", min=1)
    try:
        exported = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    except Exception as exc:  # torch raises many kinds here; the first line is what the user needs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StepError(f"step '{STEP}': component '{component}' is not exportable with torch.export "
                        f"({first[:200]}); drop it from targets") from None
    graph = exported.module()
    _drop_no_ops(graph)
    _fold_batchnorms(graph)
    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for x in inputs:
            prepared(x)
    converted = convert_pt2e(prepared)
    _drop_unused_tensors(converted)
    for name, buffer in list(converted.named_buffers()):
        if "." not in name and name.startswith("_zero_point_") and buffer.dtype == torch.int64:
            # per-channel weight zero points are int8-range values; int64 would be 8 bytes of zeros per channel
            converted.register_buffer(name, buffer.to(torch.int32))
    return converted


def _capture_inputs(model: Any, components: tuple[str, ...], batches: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Each component's real inputs (pixel values; the projector's image features) over the calibration set."""
    import torch

    captured: dict[str, list[Any]] = {c: [] for c in components}
    handles = []
    for component in components:
        module = model.module(component)
        handles.append(module.register_forward_pre_hook(
            lambda _m, args, kwargs, c=component: captured[c].append((args[0] if args else
                                                                      kwargs["pixel_values"]).detach().clone()),
            with_kwargs=True))
    try:
        with torch.no_grad():
            for batch in batches:
                model.image_features(batch["pixel_values"])
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _replace(model: Any, component: str, new: Any) -> None:
    replace_module(model.model, MODULE_PATHS[component], new)


def _component_core(model: Any, component: str) -> Any:
    """What is exported for a component: the projector as it is, the tower as a tensor function."""
    from harness.steps._static_modules import VisionCore

    module = model.module(component)
    return VisionCore(module).eval() if component == "vision" else module.eval()


def _weight_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@STEPS.register(STEP, "static INT8 activations + weights of vision/projector via PT2E (export, calibrate, convert)")
class StaticInt8(Step):
    Config = StaticInt8Config
    shrinks_storage: ClassVar[bool] = True
    default_targets: ClassVar[tuple[str, ...]] = SUPPORTED
    examples: ClassVar[list[dict]] = [
        {"kind": STEP, "calibration": {"items": 8, "batch_size": 8,
                                       "dataset": {"name": "nano-vqa", "split": "validation"}}},
    ]

    def apply(self, config: StaticInt8Config, model: Any, ctx: StepContext) -> None:
        import torch

        from harness.steps._static_modules import StaticInt8Graph

        components = self.targets(config)
        self._check(components, model)
        if ctx.replay:
            self._replay(components, model, ctx)
            return
        from harness.steps._calibration import calibration_batches

        batches = calibration_batches(model, config.calibration or CalibrationSpec(), STEP, ctx.data_dir)
        captured = _capture_inputs(model, components, batches)
        for component in components:
            inputs = captured[component]
            if not inputs:
                raise StepError(f"step '{STEP}': calibration never reached '{component}'; drop it from targets")
            core = _component_core(model, component)
            float_bytes = _weight_bytes(core.parameters())
            with torch.no_grad():
                reference = [core(x).float() for x in inputs]
            graph = _quantize_graph(core, inputs, component)
            with torch.no_grad():
                outputs = [graph(x).float() for x in inputs]
            ref, out = torch.cat([r.flatten() for r in reference]), torch.cat([o.flatten() for o in outputs])
            cosine = float(torch.nn.functional.cosine_similarity(ref, out, dim=0))
            max_abs = float((ref - out).abs().max())
            nodes = _qparam_nodes(graph)
            ctx.record[component] = {
                "input_shape": list(inputs[0].shape[1:]),
                "qparams": [[float(n.args[1]), int(n.args[2])] for n in nodes]}
            _replace(model, component, StaticInt8Graph(graph, vision=component == "vision"))
            ops = [str(n.target) for n in graph.graph.nodes if n.op == "call_function"]
            int8_weights = [t for _, t in graph.named_buffers() if t.dtype == torch.int8]
            ctx.note(f"{component}: static INT8 ({sum('conv2d' in o for o in ops)} conv, "
                     f"{sum('linear' in o for o in ops)} linear; uint8 per-tensor activations, int8 per-channel "
                     f"weights), stored tensors {float_bytes / 1e6:.3f} -> "
                     f"{_weight_bytes(graph.state_dict().values()) / 1e6:.3f} MB "
                     f"({len(int8_weights)} int8 weight tensors); on {sum(len(x) for x in inputs)} calibration "
                     f"images vs fp32: cosine {cosine:.5f}, max |diff| {max_abs:.4g}")
        ctx.note(f"{STEP}: reference quantize/dequantize arithmetic in eager PyTorch (no oneDNN lowering), "
                 "so expect smaller storage, not faster encoding")

    @staticmethod
    def _check(components: tuple[str, ...], model: Any) -> None:
        import torch

        unsupported = [c for c in components if c not in SUPPORTED]
        if unsupported:
            raise StepError(f"step '{STEP}': {unsupported} not supported (LLM: dynamic sequence length and KV cache "
                            "are not exportable for static INT8); set targets to a subset of [vision, projector]")
        for component in components:
            module = model.module(component)
            if is_static_int8(module):
                raise StepError(f"step '{STEP}': '{component}' is already static INT8; apply the step once")
            dtypes = {p.dtype for p in module.parameters()}
            if dtypes - {torch.float32}:
                raise StepError(f"step '{STEP}': '{component}' has {sorted(map(str, dtypes))} weights; static INT8 "
                                "calibrates float32, so put it before 'cast' and weight-only quantization")

    @staticmethod
    def _replay(components: tuple[str, ...], model: Any, ctx: StepContext) -> None:
        """Rebuild the same converted graphs from the skeleton; the saved tensors overwrite its weights."""
        import torch

        from harness.steps._static_modules import StaticInt8Graph

        generator = torch.Generator().manual_seed(0)
        for component in components:
            saved = ctx.record.get(component)
            if not saved:
                raise ModelLoadError(f"step '{STEP}': the saved variant has no record for '{component}'; rebuild it")
            dummy = torch.randn(2, *saved["input_shape"], generator=generator)
            graph = _quantize_graph(_component_core(model, component), [dummy], component)
            nodes = _qparam_nodes(graph)
            if len(nodes) != len(saved["qparams"]):
                raise ModelLoadError(f"step '{STEP}': '{component}' graph has {len(nodes)} activation quantizers, "
                                     f"the saved variant {len(saved['qparams'])}; rebuild it with this version")
            for node, (scale, zero_point) in zip(nodes, saved["qparams"]):
                node.args = (node.args[0], scale, zero_point, *node.args[3:])
            graph.recompile()
            _replace(model, component, StaticInt8Graph(graph, vision=component == "vision"))
            ctx.note(f"{component}: static INT8 graph rebuilt; {len(nodes)} activation quantizers from the record")
