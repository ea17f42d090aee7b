"""Cross-model recipes: a `models:` section (name → base model, optional baseline variant) instead
of one `base:`, so one run compares several base models side by side.

Each variant is of one model: it names it (`model:`), or it is built from every model, once each,
named `<model>-<variant>`. Retention is measured within a model only, against that model's own
baseline variant — its `baseline:`, else its first variant when that has no steps, else an
uncompressed variant named after the model, added first. A model's baseline must be one of its
own variants: a ratio of one model's accuracy to another's is a comparison, not a retention.
"""

from __future__ import annotations

from typing import Any

from harness.registry import did_you_mean
from harness.spec.messages import Problems
from harness.spec.models import RecipeSpec, ResolvedVariant, VariantSpec
from harness.spec.yamlio import Loc


def check_models(spec: RecipeSpec, data: dict[str, Any], expanded: list[tuple[VariantSpec, Loc]],
                 problems: Problems) -> None:
    """What a `models:` section excludes (`base:`, a recipe-wide `baseline:`, `search:`), and every
    variant's `model:` names an entry of it (a did-you-mean otherwise)."""
    names = list(spec.models)
    if not names:
        for variant, loc in expanded:
            if variant.model is not None:
                problems.add((*loc, "model"), f"variant '{variant.name}' names model '{variant.model}', but the "
                                              "recipe has no `models:` section; add one, or drop `model:` to "
                                              "build it from `base:`")
        return
    if "base" in data:
        problems.add(("base",), "give either `base:` (one model) or `models:` (several), not both; move the base "
                                "into `models:`")
    if spec.baseline is not None:
        problems.add(("baseline",), "with `models:`, each model names its own baseline (`models.<name>.baseline`); "
                                    "a recipe-wide baseline would compare one model's variants with another's")
    if spec.search is not None:
        problems.add(("search",), "`harness search` explores one base model; search each model's recipe on its own")
    for variant, loc in expanded:
        if variant.model is not None and variant.model not in spec.models:
            problems.add((*loc, "model"), f"unknown model '{variant.model}'{did_you_mean(variant.model, names)} "
                                          f"(models: {', '.join(names)})")


def arrange(spec: RecipeSpec, resolved: list[ResolvedVariant],
            problems: Problems) -> tuple[list[ResolvedVariant], dict[str, str]]:
    """The variants grouped by model (in `models:` order, each model's baseline first) and each
    model's baseline; a variant without `model:` becomes one per model."""
    variants: list[ResolvedVariant] = []
    baselines: dict[str, str] = {}
    for model, entry in spec.models.items():
        mine = [v.model_copy(update={"model": model, "name": f"{model}-{v.name}"}) if v.model is None else v
                for v in resolved if v.model in (None, model)]
        if entry.baseline is not None:
            baselines[model] = entry.baseline
        elif mine and not mine[0].steps:
            baselines[model] = mine[0].name
        else:  # retention needs an uncompressed reference: add it rather than guess (as for `base:`)
            mine.insert(0, ResolvedVariant(name=model, steps=[], gate=not mine, model=model))
            baselines[model] = model
        first = next((v for v in mine if v.name == baselines[model]), None)
        variants += [first, *(v for v in mine if v is not first)] if first else mine
    _check_baselines(spec, variants, baselines, problems)
    return variants, baselines


def _check_baselines(spec: RecipeSpec, variants: list[ResolvedVariant], baselines: dict[str, str],
                     problems: Problems) -> None:
    """Each model's `baseline:` names one of its own variants."""
    model_of = {v.name: v.model for v in variants}
    for model, baseline in baselines.items():
        if spec.models[model].baseline is None:
            continue
        loc = ("models", model, "baseline")
        own = [name for name, of in model_of.items() if of == model]
        if baseline not in model_of:
            problems.add(loc, f"no variant named '{baseline}'{did_you_mean(baseline, own)} (variants of model "
                              f"'{model}': {', '.join(own) or 'none'})")
        elif model_of[baseline] != model:
            problems.add(loc, f"'{baseline}' is a variant of model '{model_of[baseline]}', not of '{model}': "
                              "retention is measured against the model's own baseline, never across models or "
                              f"families; name one of {', '.join(own) or 'its variants'}")
