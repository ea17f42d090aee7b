"""Checking a `search:` section beyond its shape: every problem at once, at the parameter's
file:line — kept apart from the data model (`harness.spec.search`) because it needs the step
configs (`harness.spec.resolve`), which need the recipe model that holds the search section."""

from __future__ import annotations

from typing import Any

from harness.spec.search import NONE, Param, SearchSpec, Slot, is_param


def check_search(spec: SearchSpec, problems: Any, known_objectives: dict[str, bool]) -> None:
    """An empty or one-point space, a contradictory parameter, a field a step does not accept, an
    unknown objective: each one line at its location."""
    loc = ("search",)
    if not spec.space:
        problems.add((*loc, "space"), "the space is empty: give at least one slot with a step kind to search")
    names = [s.slot for s in spec.space]
    for name in dict.fromkeys(n for n in names if names.count(n) > 1):
        problems.add((*loc, "space"), f"slot name '{name}' is used twice; slot names must be unique")
    points = 1.0
    for index, slot in enumerate(spec.space):
        points *= _check_slot(slot, (*loc, "space", index), problems)
    if spec.space and points <= 1:
        problems.add((*loc, "space"), "the space has a single point (one kind per slot, no parameters): there is "
                                      "nothing to search — list it as a variant, or add choices")
    if not spec.objectives:
        problems.add((*loc, "objectives"), f"give at least one objective ({', '.join(sorted(known_objectives))})")
    for index, objective in enumerate(spec.objectives):
        if objective not in known_objectives:
            from harness.registry import did_you_mean

            problems.add((*loc, "objectives", index),
                         f"unknown objective '{objective}'{did_you_mean(objective, sorted(known_objectives))}")
    if len(set(spec.objectives)) != len(spec.objectives):
        problems.add((*loc, "objectives"), "an objective is listed twice")


def _check_slot(slot: Slot, loc: Any, problems: Any) -> float:
    """Problems of one slot; returns how many points it spans."""
    from harness.registries import STEPS
    from harness.registry import did_you_mean

    if not slot.kinds:
        problems.add((*loc, "kinds"), "no step kinds: give at least one (or 'none')")
    points = 0.0
    for kind, fields in slot.kinds.items():
        where = (*loc, "kinds", kind)
        if kind == NONE:
            points += 1
            if fields:
                problems.add(where, "'none' skips the slot and takes no fields")
            continue
        if kind not in STEPS:
            problems.add(where, f"unknown step '{kind}'{did_you_mean(kind, STEPS.names())}")
            continue
        points += _check_fields(kind, fields, where, problems)
    return points


def _check_fields(kind: str, fields: dict[str, Any], loc: Any, problems: Any) -> float:
    """Each parameter is well formed, and the step's config accepts each of its choices and ends
    (the others at their first value); returns how many points the kind spans."""
    from pydantic import ValidationError

    from harness.spec.resolve import resolve_step

    params: dict[str, Param] = {}
    for name, value in fields.items():
        if not is_param(value):
            continue
        try:
            params[name] = Param.model_validate(value)
        except ValidationError as exc:
            problems.add_validation(exc, Param, (*loc, name))
            continue
        problem = params[name].problem()
        if problem:
            problems.add((*loc, name), problem)
            params.pop(name)
    first = {name: (params[name].edges()[0] if name in params else value) for name, value in fields.items()
             if name in params or not is_param(value)}
    resolve_step({"kind": kind, **first}, loc, problems)
    for name, param in params.items():
        for value in param.edges()[1:]:
            resolve_step({"kind": kind, **first, name: value}, loc, problems)
    points = 1.0
    for param in params.values():
        points *= param.size()
    return points
