"""Resolving a variant: each step's config parsed by its own class (through the step registry),
the artifact's formats after every step, and which recipe runtimes can measure it. Every
problem is collected with its location; nothing here imports torch."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from harness.registries import RUNTIMES, STEPS
from harness.registry import did_you_mean
from harness.spec.messages import Problems, error_message
from harness.spec.models import ResolvedVariant, VariantSpec
from harness.spec.vocabulary import COMPONENTS
from harness.spec.yamlio import Loc


def resolve_step(raw: Any, loc: Loc, problems: Problems) -> Any | None:
    """The step's validated config, or None with its problems recorded."""
    if not isinstance(raw, dict) or "kind" not in raw:
        problems.add(loc, "each step needs a 'kind:' (see `harness ls steps`)")
        return None
    kind = raw["kind"]
    if kind not in STEPS:
        problems.add((*loc, "kind"), f"unknown step '{kind}'{did_you_mean(str(kind), STEPS.names())}")
        return None
    config_cls = STEPS.get(kind).Config
    try:
        return config_cls.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            if err["loc"] and err["loc"][0] == "targets":
                message = f"targets {raw.get('targets')!r}: components are {', '.join(COMPONENTS)}"
            else:
                message = error_message(err, config_cls, f"step '{kind}'")
            problems.add((*loc, *err["loc"]), message)
        return None


def check_formats(steps: list[Any], loc: Loc, problems: Problems) -> list[str] | None:
    """The artifact's formats after each step; a step whose input format is missing, or a torch
    step after an export (which would leave the export stale), is a problem."""
    formats = ["torch"]
    for index, config in enumerate(steps):
        step = STEPS.get(config.kind)
        if step.consumes not in formats:
            problems.add((*loc, "steps", index), f"step '{config.kind}' needs a {step.consumes} artifact but the "
                                                 f"variant has only {'+'.join(formats)}; add an export to "
                                                 f"{step.consumes} before it")
            return None
        if step.consumes == step.produces == "torch" and len(formats) > 1:
            problems.add((*loc, "steps", index), f"step '{config.kind}' changes the torch model after it was "
                                                 f"exported to {'+'.join(formats[1:])}; put export steps after "
                                                 "every torch step")
            return None
        if step.produces not in formats:
            formats.append(step.produces)
    return formats


def runtime_plan(formats: list[str], runtimes: list[str], chosen: list[str] | None = None) -> dict[str, str | None]:
    """Runtime → None when it measures the variant, else why it is not applicable.

    Without a variant `runtimes:` list, a runtime measures a variant when it accepts the variant's
    last-added format (an export variant is measured as that export; its torch weights serve as
    the parity reference). With the list, exactly the listed runtimes measure it.
    """
    plan: dict[str, str | None] = {}
    primary = formats[-1]
    for runtime in runtimes:
        accepts = RUNTIMES.get(runtime).accepts
        if chosen is not None:
            plan[runtime] = None if runtime in chosen else "not listed in the variant's runtimes"
        elif primary in accepts:
            plan[runtime] = None
        else:
            plan[runtime] = (f"{runtime} runs {'/'.join(accepts)} artifacts; this variant is measured as "
                             f"{primary} (formats {'+'.join(formats)})")
    return plan


def check_runtimes(variant: VariantSpec, formats: list[str], runtimes: list[str], loc: Loc,
                   problems: Problems) -> None:
    """A variant's own `runtimes:` are recipe runtimes that can run it, and some runtime measures it."""
    known = [r for r in runtimes if r in RUNTIMES]
    for index, runtime in enumerate(variant.runtimes or []):
        if runtime not in runtimes:
            problems.add((*loc, "runtimes", index), f"runtime '{runtime}' is not in the recipe's runtimes "
                                                    f"{runtimes}{did_you_mean(runtime, runtimes)}")
        elif runtime in RUNTIMES and not set(RUNTIMES.get(runtime).accepts) & set(formats):
            problems.add((*loc, "runtimes", index), f"runtime '{runtime}' runs "
                                                    f"{'/'.join(RUNTIMES.get(runtime).accepts)}, but variant "
                                                    f"'{variant.name}' has only {'+'.join(formats)}")
    chosen = [r for r in variant.runtimes if r in known] if variant.runtimes is not None else None
    plan = runtime_plan(formats, known, chosen)
    if known and not any(reason is None for reason in plan.values()):
        wanted = [n for n in RUNTIMES.names() if formats[-1] in RUNTIMES.get(n).accepts]
        problems.add(loc, f"no runtime of the recipe can run variant '{variant.name}' ({formats[-1]} artifact); "
                          f"add one of {wanted or 'the runtimes for ' + formats[-1]} to runtimes")


def resolve_variant(variant: VariantSpec, loc: Loc, runtimes: list[str], problems: Problems) -> ResolvedVariant | None:
    steps = [resolve_step(raw, (*loc, "steps", i), problems) for i, raw in enumerate(variant.steps)]
    if any(step is None for step in steps):
        return None
    formats = check_formats(steps, loc, problems)
    if formats is None:
        return None
    check_runtimes(variant, formats, runtimes, loc, problems)
    return ResolvedVariant(name=variant.name, steps=steps, gate=variant.gate, formats=formats,
                           runtimes=variant.runtimes, model=variant.model)
