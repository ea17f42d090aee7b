"""Reading a recipe: pure, validated data; nothing here imports torch.

A recipe names a base model (or several, `models:`; see `harness.spec.cross_model`), the variants
to build (ordered steps, or a grid that expands into variants), the runtimes and suites to
measure with, the targets and gate, and where runs go.
Every problem of a file is reported at once, one line each, naming ``file:line``, the field and
a fix; `--set key=value` overrides are validated like the file and named as such.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.errors import ConfigError
from harness.registries import RUNTIMES
from harness.registry import did_you_mean
from harness.spec.cross_model import arrange, check_models
from harness.spec.grid import expand
from harness.spec.messages import ConfigProblems, Problems
from harness.spec.models import (
    BaseModelSpec,
    GridSpec,
    ParityPolicy,
    Recipe,
    RecipeSpec,
    RegressionPolicy,
    ResolvedVariant,
    Targets,
    VariantSpec,
)
from harness.spec.resolve import resolve_step, resolve_variant, runtime_plan
from harness.spec.yamlio import Loc, load_yaml

__all__ = ["BaseModelSpec", "GridSpec", "ParityPolicy", "Recipe", "RecipeSpec", "RegressionPolicy",
           "ResolvedVariant", "Targets", "VariantSpec", "apply_overrides", "find_recipe", "load_recipe", "parse_recipe",
           "runtime_plan"]


def _strings(data: dict[str, Any], key: str, default: list[str]) -> list[str]:
    """A list-of-strings field as written (its type problems are the model's to report)."""
    value = data.get(key, default)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _check_references(data: dict[str, Any], path: Path | None, problems: Problems) -> None:
    """Runtimes are registered, suite files exist and parse, data dirs exist — read from the data
    as written, so they are checked even when the rest of the recipe is not valid."""
    from harness.spec.suite_files import find_suite, load_suite

    fields = RecipeSpec.model_fields
    runtimes = _strings(data, "runtimes", fields["runtimes"].get_default(call_default_factory=True))
    for index, runtime in enumerate(runtimes):
        if runtime not in RUNTIMES:
            problems.add(("runtimes", index), f"unknown runtime '{runtime}'{did_you_mean(runtime, RUNTIMES.names())}")
    recipe_dir = path.parent if path else None
    for index, suite in enumerate(_strings(data, "suites", fields["suites"].get_default(call_default_factory=True))):
        try:
            find_suite(suite, recipe_dir)
        except ConfigError as exc:
            problems.add(("suites", index), str(exc))
            continue
        try:
            load_suite(suite, recipe_dir)
        except ConfigProblems as exc:  # the suite file's own lines, with their own file:line
            for line in exc.problems:
                problems.add_line(line)
        except ConfigError as exc:
            problems.add_line(str(exc))
    base = recipe_dir or Path.cwd()
    for index, folder in enumerate(_strings(data, "data_dirs", [])):
        if not (base / Path(folder).expanduser()).is_dir():
            problems.add(("data_dirs", index), f"'{folder}' is not a directory (relative to {base}); create it or "
                                               "remove the entry")


def known_objectives() -> dict[str, bool]:
    """Objective name → higher is better, over every registered suite kind."""
    from harness.registries import SUITE_KINDS

    return {o.name: o.higher_is_better for n in SUITE_KINDS.names() for o in SUITE_KINDS.get(n).objectives}


def _check_objectives(spec: RecipeSpec, problems: Problems) -> None:
    """`select:` and the search's objectives name objectives some registered suite kind contributes."""
    known = known_objectives()
    names = sorted(known)
    if spec.select not in names:
        problems.add(("select",), f"unknown objective '{spec.select}'{did_you_mean(spec.select, names)}")
    if spec.search is not None:
        from harness.spec.search_check import check_search

        check_search(spec.search, problems, known)


def _check_runtime_options(spec: RecipeSpec, problems: Problems) -> None:
    """Each `runtime_options` entry names a recipe runtime that takes options, and its runtime's own
    `Config` accepts them (so a runtime adds its settings in its own file)."""
    for name, options in spec.runtime_options.items():
        loc = ("runtime_options", name)
        config = getattr(RUNTIMES.get(name), "Config", None) if name in RUNTIMES else None
        if name not in RUNTIMES:
            problems.add(loc, f"unknown runtime '{name}'{did_you_mean(name, RUNTIMES.names())}")
        elif name not in spec.runtimes:
            problems.add(loc, f"runtime '{name}' is not in the recipe's runtimes {spec.runtimes}: add it there or "
                              "drop its options")
        elif config is None:
            problems.add(loc, f"runtime '{name}' takes no options")
        else:
            try:
                config.model_validate(options)
            except ValidationError as exc:
                problems.add_validation(exc, config, loc, f"runtime '{name}'")


def _check_variants(variants: list[ResolvedVariant], spec: RecipeSpec, problems: Problems) -> None:
    names = [v.name for v in variants]
    for name in dict.fromkeys(n for n in names if names.count(n) > 1):
        problems.add(("variants",), f"variant name '{name}' is used twice; names must be unique")
    if spec.baseline and spec.baseline not in names:
        problems.add(("baseline",), f"no variant named '{spec.baseline}'{did_you_mean(spec.baseline, names)}")


def _raw_steps(data: dict[str, Any]) -> list[tuple[Loc, Any]]:
    """Every step of the `variants:` list as written, to check them even when the recipe around fails."""
    variants = data.get("variants")
    if not isinstance(variants, list):
        return []
    return [(("variants", i, "steps", j), raw) for i, variant in enumerate(variants) if isinstance(variant, dict)
            and isinstance(variant.get("steps"), list) for j, raw in enumerate(variant["steps"])]


def parse_recipe(data: Any, path: Path | None = None, lines: dict[Loc, int] | None = None,
                 overridden: dict[Loc, str] | None = None) -> Recipe:
    """Validate recipe data; all problems raise together as one `ConfigProblems` (a `ConfigError`)."""
    problems = Problems(str(path) if path else "<recipe>", lines, overridden)
    if not isinstance(data, dict):
        problems.add((), "a recipe is a YAML mapping with at least 'name:'")
        problems.raise_if_any()
    if data.get("variants") == []:
        problems.add(("variants",), "an empty list; omit `variants:` to measure the base model alone")
    _check_references(data, path, problems)
    try:
        spec = RecipeSpec.model_validate(data)
    except ValidationError as exc:
        problems.add_validation(exc, RecipeSpec)
        for loc, raw in _raw_steps(data):  # steps are plain dicts to RecipeSpec: check them too
            resolve_step(raw, loc, problems)
        problems.raise_if_any()
    expanded = expand(spec, problems)
    check_models(spec, data, expanded, problems)
    resolved = (resolve_variant(variant, loc, list(spec.runtimes), problems) for variant, loc in expanded)
    variants = [v for v in resolved if v is not None]
    baselines: dict[str, str] = {}
    if spec.models:
        variants, baselines = arrange(spec, variants, problems)
    _check_variants(variants, spec, problems)
    _check_objectives(spec, problems)
    _check_runtime_options(spec, problems)
    problems.raise_if_any()
    if spec.models:
        return Recipe(spec=spec, path=path, variants=variants, model_baselines=baselines)
    if not variants:
        variants = [ResolvedVariant(name="base", steps=[])]
    elif not spec.baseline and variants[0].steps:
        # Retention needs an uncompressed reference: add it rather than guess.
        variants.insert(0, ResolvedVariant(name="base", steps=[], gate=False))
    return Recipe(spec=spec, path=path, variants=variants)


def apply_overrides(data: Any, overrides: list[str]) -> tuple[Any, dict[Loc, str]]:
    """`dotted.key=value` overrides (values read as YAML: numbers, booleans, lists) set into a copy
    of the recipe data; returns it and, per overridden location, the override's text."""
    import yaml

    data = copy.deepcopy(data) if isinstance(data, dict) else {}
    where: dict[Loc, str] = {}
    for text in overrides:
        key, sep, raw = text.partition("=")
        parts: Loc = tuple(int(p) if p.isdigit() else p for p in key.strip().split(".") if p)
        if not sep or not parts:
            raise ConfigError(f"--set {text}: give dotted.key=value (e.g. targets.max_ttft_ms=30)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        _set(data, parts, value, text)
        where[parts] = f"--set {text}"
    return data, where


def _set(data: Any, parts: Loc, value: Any, text: str) -> None:
    node = data
    for index, part in enumerate(parts[:-1]):
        nxt = parts[index + 1]
        if isinstance(node, dict):
            node = node.setdefault(part, [] if isinstance(nxt, int) else {})
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            raise ConfigError(f"--set {text}: '{'.'.join(map(str, parts[:index + 1]))}' is not a mapping or a "
                              "list position in this recipe")
    last = parts[-1]
    if isinstance(node, dict) or isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value
    else:
        raise ConfigError(f"--set {text}: cannot set '{last}' there (not a mapping key or list position)")


def find_recipe(path: str | Path) -> Path:
    """A recipe file as given, else a shipped recipe by name (`harness run quickstart` works from
    any folder, and from a wheel install)."""
    from harness.shipped import recipes_dir

    given = Path(path)
    if given.exists() or given.suffix or given.parent != Path("."):
        return given
    shipped = recipes_dir() / f"{given.name}.yaml"
    return shipped if shipped.is_file() else given


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = find_recipe(path)
    data, lines = load_yaml(path)
    overridden: dict[Loc, str] = {}
    if overrides:
        data, overridden = apply_overrides(data, overrides)
    return parse_recipe(data, path, lines, overridden)


def json_schema() -> dict[str, Any]:
    """The recipe's JSON Schema (see `harness.spec.json_schema`)."""
    from harness.spec.json_schema import json_schema as build

    return build()
