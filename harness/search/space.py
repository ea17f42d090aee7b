"""From a validated `search:` space to one trial's steps, and the trial's variant name.

Optuna's define-by-run API samples the space: each slot's kind is a categorical parameter named
after the slot, and the chosen kind's parameters are named `slot.kind.field`, so they exist only in
the trials that chose that kind (a conditional space). Choices Optuna cannot store (lists,
mappings) are sampled as their JSON text and decoded back.
"""

from __future__ import annotations

import json
import re
from typing import Any

from harness.spec.search import NONE, Param, Slot, is_param

SCALARS = (str, int, float, bool, type(None))


def _encode(choices: list[Any]) -> list[Any]:
    return [c if isinstance(c, SCALARS) else json.dumps(c, sort_keys=True) for c in choices]


def _decode(value: Any, choices: list[Any]) -> Any:
    return next((c for c in choices if c == value or json.dumps(c, sort_keys=True) == value), value)


def suggest_param(trial: Any, name: str, param: Param) -> Any:
    """One parameter's value for this trial (Optuna's suggest_* by the parameter's form)."""
    if param.choices is not None:
        return _decode(trial.suggest_categorical(name, _encode(param.choices)), param.choices)
    if param.int_ is not None:
        low, high = param.int_
        return trial.suggest_int(name, low, high, step=int(param.step or 1), log=param.log)
    low, high = param.float_  # type: ignore[misc]
    return trial.suggest_float(name, low, high, step=param.step, log=param.log)


def suggest_steps(trial: Any, space: list[Slot]) -> list[dict[str, Any]]:
    """The trial's steps: per slot, the sampled kind (none: skipped) with fixed and sampled fields."""
    steps = []
    for slot in space:
        kind = trial.suggest_categorical(slot.slot, list(slot.kinds))
        if kind == NONE:
            continue
        step: dict[str, Any] = {"kind": kind}
        for field, value in (slot.kinds[kind] or {}).items():
            step[field] = suggest_param(trial, f"{slot.slot}.{kind}.{field}", Param.model_validate(value)) \
                if is_param(value) else value
        steps.append(step)
    return steps


def _short(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (list, dict)):
        text = "-".join(str(v) for v in (value if isinstance(value, list) else value.values()))
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def trial_name(number: int, params: dict[str, Any], space: list[Slot]) -> str:
    """`t007+weight-quant_bits4_group_size32+structured-prune_amount0.25`: the trial number (two trials
    may sample the same point) and, per slot that is not skipped, its kind and sampled values."""
    parts = [f"t{number:03d}"]
    for slot in space:
        kind = params.get(slot.slot, next(iter(slot.kinds)))
        if kind == NONE:
            continue
        sampled = [f"{field}{_short(params[f'{slot.slot}.{kind}.{field}'])}" for field in (slot.kinds[kind] or {})
                   if f"{slot.slot}.{kind}.{field}" in params]
        parts.append("_".join([kind, *sampled]))
    return "+".join(parts) if len(parts) > 1 else f"{parts[0]}+none"


def space_data(space: list[Slot]) -> list[dict[str, Any]]:
    """The space as plain data (what a resumed search compares)."""
    return [slot.model_dump(mode="json", by_alias=True, exclude_defaults=True) for slot in space]


def space_difference(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> str | None:
    """The first difference between two spaces, in words, or None when they are the same."""
    old_slots, new_slots = {s["slot"]: s for s in old}, {s["slot"]: s for s in new}
    if list(old_slots) != list(new_slots):
        return f"the slots were {', '.join(old_slots) or 'none'} and are now {', '.join(new_slots) or 'none'}"
    for name, slot in old_slots.items():
        before, after = slot.get("kinds", {}), new_slots[name].get("kinds", {})
        if list(before) != list(after):
            return f"slot '{name}': the kinds were {', '.join(before)} and are now {', '.join(after)}"
        for kind, fields in before.items():
            for field in sorted(set(fields) | set(after[kind])):
                if fields.get(field) != after[kind].get(field):
                    return (f"search.space.{name}.{kind}.{field} was {json.dumps(fields.get(field))} and is now "
                            f"{json.dumps(after[kind].get(field))}")
    return None
