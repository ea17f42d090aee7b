"""Every step's parameters are checked when a recipe is read (torch-free), never first in a build.

Registry-wide: every numeric field of every step Config (nested models included) carries a bound,
each bound is enforced by `parse_recipe` with a message naming the field, every closed choice
refuses a value outside it, and every step's contract examples still validate. A new step gets
these checks for free. The rules between fields (model validators) are listed by hand below.
"""

from __future__ import annotations

import subprocess
import sys
import types
import typing
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from harness.errors import ConfigError, StepError
from harness.registries import RUNTIMES, STEPS
from harness.spec.recipe import parse_recipe
from harness.steps._base import StepConfigError, validate_step
from harness.steps._training import TrainStepConfig

BOUNDS = ("gt", "ge", "lt", "le")

#: Numeric fields allowed without a Field bound, each with the reason (and where it is checked).
EXEMPT: dict[tuple[type[BaseModel], str], str] = {
    # steps/minutes > 0 is checked by TrainStepConfig._budget through training.loop.budget_problem, the
    # one rule (and message) shared with direct callers of the trainer; see TRAINING_BUDGET below.
    (TrainStepConfig, "steps"): "budget_problem",
    (TrainStepConfig, "minutes"): "budget_problem",
}


def recipe(*steps: dict[str, Any]) -> dict[str, Any]:
    """A one-variant recipe; every runtime is listed, so an export variant has one that can run it."""
    return {"name": "r", "runtimes": RUNTIMES.names(), "variants": [{"name": "v", "steps": list(steps)}]}


def with_requires(step: dict[str, Any]) -> dict[str, Any]:
    """A recipe running `step` after what its kind needs first (an export for ort-quant, ...)."""
    return recipe(*STEPS.get(step["kind"]).example_requires, step)


def refused(step: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_recipe(with_requires(step))
    return str(info.value)


def location(kind: str, path: tuple[str, ...]) -> str:
    """How the recipe reader names the field at `path` of the step (which follows its requirements)."""
    return f"variants.0.steps.{len(STEPS.get(kind).example_requires)}.{'.'.join(path)}"


# --- field introspection -----------------------------------------------------------------------
def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    candidate = _strip_optional(annotation)
    return candidate if isinstance(candidate, type) and issubclass(candidate, BaseModel) else None


def _is_number(annotation: Any) -> bool:
    return annotation in (int, float)


def _bounds(metadata: list[Any]) -> dict[str, Any]:
    return {attr: getattr(m, attr) for m in metadata for attr in BOUNDS if getattr(m, attr, None) is not None}


def fields(model: type[BaseModel], path: tuple[str, ...] = ()):
    """(model, dotted path, field info, annotation without None) for every field, nested models included."""
    for name, info in model.model_fields.items():
        if name == "kind":
            continue
        nested = _nested_model(info.annotation)
        if nested is not None:
            yield from fields(nested, (*path, name))
        else:
            yield model, (*path, name), info, _strip_optional(info.annotation)


def has_field_validator(model: type[BaseModel], name: str) -> bool:
    return any(name in d.info.fields or "*" in d.info.fields
               for d in model.__pydantic_decorators__.field_validators.values())


def numeric_fields(config: type[BaseModel]):
    """(model, path, bounds) per numeric field; list items count with the bounds of their item type."""
    for model, path, info, annotation in fields(config):
        if _is_number(annotation):
            yield model, path, _bounds(info.metadata)
        elif typing.get_origin(annotation) is list:
            (item,) = typing.get_args(annotation)
            if typing.get_origin(item) is typing.Annotated:
                base, *extra = typing.get_args(item)
                if _is_number(base):
                    yield model, path, _bounds([m for e in extra for m in getattr(e, "metadata", [e])])
            elif _is_number(item):
                yield model, path, {}


def nest(path: tuple[str, ...], value: Any, into: dict[str, Any]) -> dict[str, Any]:
    """`into` with the field at `path` set to `value` (nested dicts merged, not replaced)."""
    head, *rest = path
    if not rest:
        return {**into, head: value}
    inner = into.get(head) if isinstance(into.get(head), dict) else {}
    return {**into, head: nest(tuple(rest), value, inner)}


def outside(bound: str, limit: Any) -> Any:
    return {"gt": limit, "ge": limit - 1, "lt": limit, "le": limit + 1}[bound]


def base_config(kind: str) -> dict[str, Any]:
    return dict(STEPS.get(kind).examples[0])


KINDS = STEPS.names()


# --- every numeric field is bounded ------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_every_numeric_field_has_a_bound(kind):
    config = STEPS.get(kind).Config
    unbounded = []
    for model, path, bounds in numeric_fields(config):
        exempt = any(issubclass(model, cls) and path[-1] == name for cls, name in EXEMPT)
        if not bounds and not has_field_validator(model, path[-1]) and not exempt:
            unbounded.append(".".join(path))
    assert not unbounded, (f"step '{kind}': numeric fields without a range: {unbounded}; give each a "
                           "Field(gt=/ge=/lt=/le=) bound, a Literal, a field validator, or an EXEMPT entry")


def test_exemptions_still_name_real_fields():
    for cls, name in EXEMPT:
        assert name in cls.model_fields, f"EXEMPT lists {cls.__name__}.{name}, which no longer exists"


# --- every bound is enforced when the recipe is read -------------------------------------------
BOUND_CASES = [(kind, path, bound, outside(bound, limit))
               for kind in KINDS
               for _, path, bounds in numeric_fields(STEPS.get(kind).Config)
               for bound, limit in bounds.items()]


@pytest.mark.parametrize("kind,path,bound,bad", BOUND_CASES,
                         ids=[f"{k}-{'.'.join(p)}-{b}" for k, p, b, _ in BOUND_CASES])
def test_out_of_range_values_are_refused_when_read(kind, path, bound, bad):
    config = STEPS.get(kind).Config
    is_list = any(p == path and typing.get_origin(_strip_optional(i.annotation)) is list
                  for _, p, i, _ in fields(config))
    step = nest(path, [bad] if is_list else bad, base_config(kind))
    message = refused(step)
    assert location(kind, path) in message, message


def _literal_fields(config: type[BaseModel]):
    """(path, a value outside the choices, whether the field is a list) for every closed-choice field."""
    for _, path, _info, annotation in fields(config):
        is_list = typing.get_origin(annotation) is list
        inner = typing.get_args(annotation)[0] if is_list else annotation
        if typing.get_origin(inner) is not Literal:
            continue
        choices = typing.get_args(inner)
        bad: Any = max(choices) + 1 if all(isinstance(c, int) for c in choices) else "no-such-choice"
        yield path, bad, is_list


LITERAL_CASES = [(kind, path, bad, is_list) for kind in KINDS
                 for path, bad, is_list in _literal_fields(STEPS.get(kind).Config)
                 if path != ("targets",)]  # the shared components list: see test_targets_are_checked


@pytest.mark.parametrize("kind,path,bad,is_list", LITERAL_CASES,
                         ids=[f"{k}-{'.'.join(p)}" for k, p, _, _ in LITERAL_CASES])
def test_values_outside_a_closed_choice_are_refused(kind, path, bad, is_list):
    message = refused(nest(path, [bad] if is_list else bad, base_config(kind)))
    assert location(kind, path) in message, message


# --- the rules the Field bounds cannot say, by hand ----------------------------------------------
TRAINING_BUDGET = [
    ({"kind": "finetune", "steps": 0}, ["steps", "trains nothing"]),
    ({"kind": "finetune", "minutes": -1}, ["minutes", "trains nothing"]),
    ({"kind": "qat"}, ["steps or minutes"]),
]

RULES = [
    *TRAINING_BUDGET,
    ({"kind": "finetune", "steps": 2, "batch_size": 4, "grad_accum": 8}, ["grad_accum", "batch_size"]),
    ({"kind": "finetune", "steps": 2, "early_stop_patience": 2}, ["early_stop_patience", "eval_items"]),
    ({"kind": "distill", "steps": 2, "kl_weight": 0}, ["kl_weight", "ce_weight", "hidden_weight", "> 0"]),
    ({"kind": "distill", "steps": 2, "teacher": ""}, ["teacher"]),
    ({"kind": "distill", "steps": 2, "targets": ["llm"]}, ["targets"]),
    ({"kind": "qat", "steps": 2, "group_size": 1}, ["group_size", "-1"]),
    ({"kind": "prune", "method": "4:4"}, ["method", "0 < N < M"]),
    ({"kind": "prune", "method": "0:4"}, ["method", "0 < N < M"]),
    ({"kind": "prune", "method": "2:4", "sparsity": 0.5}, ["sparsity", "implies sparsity 0.5"]),
    ({"kind": "prune", "method": "magnitude", "score": "wanda"}, ["score", "N:M"]),
    ({"kind": "prune", "method": "l1"}, ["method"]),
    ({"kind": "structured-prune", "what": "heads", "heads": [0], "targets": ["vision"]}, ["targets", "llm"]),
    ({"kind": "structured-prune", "what": "vision-blocks", "layers": [0]}, ["layers", "what: layers"]),
    ({"kind": "structured-prune", "what": "mlp"}, ["amount"]),
    ({"kind": "structured-prune", "what": "layers", "amount": 0.5, "layers": [1]}, ["exactly one of amount or layers"]),
    ({"kind": "structured-prune", "what": "layers", "layers": []}, ["layers"]),
    ({"kind": "structured-prune", "what": "heads", "heads": [-1]}, ["heads"]),
    ({"kind": "structured-prune", "what": "vision-blocks", "blocks": ["1"]}, ["blocks", "stage.block"]),
    ({"kind": "structured-prune", "what": "vision-blocks", "blocks": []}, ["blocks"]),
    ({"kind": "token-merge", "method": "tome"}, ["r >= 1"]),
    ({"kind": "token-merge", "method": "avg-pool", "r": 2}, ["r is for method: tome"]),
    ({"kind": "token-merge", "targets": ["llm"]}, ["targets", "vision"]),
    ({"kind": "kv-cache"}, ["quantize", "sliding_window"]),
    ({"kind": "kv-cache", "quantize": "int8", "full_attention_layers": 1}, ["full_attention_layers", "sliding_window"]),
    ({"kind": "kv-cache", "quantize": "int8", "targets": ["vision"]}, ["targets", "llm"]),
    ({"kind": "reparameterize", "targets": ["llm"]}, ["targets", "vision"]),
    ({"kind": "resolution", "size": 64, "targets": ["llm"]}, ["targets", "vision"]),
    ({"kind": "static-int8", "targets": ["llm"]}, ["targets", "vision, projector"]),
    ({"kind": "fault", "targets": ["vision", "llm"]}, ["targets"]),
    ({"kind": "weight-quant", "algorithm": "gptq"}, ["calibration"]),
    ({"kind": "weight-quant", "group_size": 48}, ["group_size", "-1, 16, 32, 64, 128"]),
    ({"kind": "mixed-precision", "max_size_mb": 1, "bits": [4, 4]}, ["bits", "distinct"]),
    ({"kind": "mixed-precision", "max_size_mb": 1, "bits": []}, ["bits"]),
    ({"kind": "mixed-precision", "max_size_mb": 1, "bits": [16]}, ["bits", "4 and/or 8"]),
    ({"kind": "ort-quant", "mode": "int4-weight-only", "block_size": 48}, ["block_size", "power of two"]),
    ({"kind": "ort-quant", "op_types": []}, ["op_types"]),
    ({"kind": "ort-quant", "op_types": ["MatMul", "MatMul"]}, ["op_types", "twice"]),
    ({"kind": "coreml-optimize", "dtype": "int4", "granularity": "per_channel"}, ["granularity", "per_block"]),
    ({"kind": "coreml-optimize", "graphs": []}, ["graphs"]),
    ({"kind": "coreml-optimize", "targets": ["llm"]}, ["targets", "graphs"]),
    ({"kind": "litert-quant", "graphs": ["embed", "embed"]}, ["graphs", "twice"]),
    ({"kind": "litert-quant", "targets": ["llm"]}, ["targets", "graphs"]),
    ({"kind": "export-onnx", "components": []}, ["components"]),
    ({"kind": "export-onnx", "components": ["vision", "vision"]}, ["components", "twice"]),
    ({"kind": "export-onnx", "targets": ["llm"]}, ["targets", "components"]),
    ({"kind": "export-coreml", "components": []}, ["components"]),
    ({"kind": "export-coreml", "targets": ["vision"]}, ["targets", "components"]),
    ({"kind": "export-tflite", "prefill_length": 256, "cache_length": 256}, ["prefill_length", "cache_length"]),
    ({"kind": "export-tflite", "components": ["decoder", "decoder"]}, ["components", "twice"]),
    ({"kind": "export-tflite", "targets": ["llm"]}, ["targets", "components"]),
    ({"kind": "cast", "targets": []}, ["targets", "at least one"]),
    ({"kind": "quantize", "targets": ["llm", "llm"]}, ["targets", "twice"]),
]


@pytest.mark.parametrize("step,fragments", RULES, ids=[f"{s['kind']}-{i}" for i, (s, _) in enumerate(RULES)])
def test_rules_between_fields_are_refused_when_read(step, fragments):
    message = refused(step)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_every_step_kind_has_a_refused_case():
    covered = ({k for k, *_ in BOUND_CASES} | {k for k, *_ in LITERAL_CASES} | {s["kind"] for s, _ in RULES})
    assert covered == set(KINDS), f"steps with no out-of-range case: {sorted(set(KINDS) - covered)}"


def test_targets_are_checked_for_every_step():
    for kind in KINDS:
        assert "targets" in refused({**base_config(kind), "targets": ["decoder"]})


# --- what stays valid ----------------------------------------------------------------------------
EXAMPLES = [(name, example) for name in KINDS for example in STEPS.get(name).examples]


@pytest.mark.parametrize("name,example", EXAMPLES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(EXAMPLES)])
def test_every_example_still_validates(name, example):
    recipe_ = parse_recipe(with_requires(example))
    assert recipe_.variants[-1].steps[-1].kind == name


@pytest.mark.parametrize("kind", KINDS)
def test_defaults_sit_inside_their_ranges(kind):
    config = STEPS.get(kind).Config
    for _, path, info, annotation in fields(config):
        bounds = _bounds(info.metadata)
        if info.is_required() or not _is_number(annotation) or not bounds:
            continue
        default = info.get_default(call_default_factory=True)
        if default is None:
            continue
        checks = {"gt": default > bounds.get("gt", default - 1), "ge": default >= bounds.get("ge", default),
                  "lt": default < bounds.get("lt", default + 1), "le": default <= bounds.get("le", default)}
        assert all(checks.values()), f"{kind}: default {default} of {'.'.join(path)} is outside {bounds}"


def test_edges_inside_the_ranges_still_validate():
    for step in ({"kind": "litert-quant", "mask_value": -1e4, "calibration_tokens": 64},
                 {"kind": "export-onnx", "opset": 14}, {"kind": "export-onnx", "opset": 20},
                 {"kind": "kv-cache", "sliding_window": 1, "full_attention_layers": 1},
                 {"kind": "ort-quant", "mode": "int4-weight-only", "block_size": 16, "accuracy_level": 4},
                 {"kind": "structured-prune", "what": "layers", "layers": [0]},
                 {"kind": "prune", "method": "1:2", "score": "wanda"},
                 {"kind": "mixed-precision", "max_size_mb": 1, "bits": [8, 16]},
                 {"kind": "finetune", "steps": 1, "batch_size": 2, "grad_accum": 2, "seed": 2**64 - 1},
                 {"kind": "distill", "steps": 1, "kl_weight": 0, "ce_weight": 1},
                 {"kind": "static-int8", "targets": ["projector"]}):
        parse_recipe(with_requires(step))


# --- outside a recipe: a direct apply_step ---------------------------------------------------------
def test_direct_validation_is_one_step_error_that_says_the_range():
    with pytest.raises(StepConfigError) as info:
        validate_step({"kind": "prune", "sparsity": 1.0})
    assert str(info.value) == "step 'prune': sparsity 1.0 is outside the allowed range 0 < sparsity < 1"
    assert isinstance(info.value, StepError) and isinstance(info.value, ValueError)
    with pytest.raises(StepConfigError, match=r"step 'kv-cache': kv-cache has nothing to do"):
        validate_step({"kind": "kv-cache"})
    with pytest.raises(StepConfigError, match=r"calibration\.items 0 is outside the allowed range "
                                              r"calibration\.items > 0"):
        validate_step({"kind": "prune", "method": "wanda", "calibration": {"items": 0}})


def test_reading_a_recipe_with_bad_ranges_imports_no_torch():
    code = ("import sys\n"
            "from harness.errors import ConfigError\n"
            "from harness.spec.recipe import parse_recipe\n"
            "try:\n"
            "    parse_recipe({'name': 'r', 'variants': [{'name': 'v',\n"
            "                                          'steps': [{'kind': 'prune', 'sparsity': -1}]}]})\n"
            "except ConfigError as exc:\n"
            "    assert 'sparsity' in str(exc), exc\n"
            "else:\n"
            "    raise SystemExit('accepted')\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
