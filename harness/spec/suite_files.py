"""Suite files: YAML definitions under `suites/`, validated by their kind's config class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import ConfigError
from harness.registries import SUITE_KINDS
from harness.registry import did_you_mean
from harness.shipped import suites_dir
from harness.spec.messages import Problems
from harness.spec.yamlio import line_of, load_yaml

PROJECT_SUITES = suites_dir()


class SuiteConfig(BaseModel):
    """Fields every suite file has; kinds add their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int = Field(1, ge=1)
    kind: str
    description: str = ""


def search_dirs(recipe_dir: Path | None) -> list[Path]:
    dirs = []
    if recipe_dir is not None:
        dirs += [recipe_dir / "suites", recipe_dir.parent / "suites"]
    dirs += [Path.cwd() / "suites", PROJECT_SUITES]
    return list(dict.fromkeys(d.resolve() for d in dirs))


def available(recipe_dir: Path | None = None) -> list[str]:
    """Runnable suites: top-level YAML files; `_`-prefixed files and sub-folders hold shared parts."""
    return sorted({p.stem for d in search_dirs(recipe_dir) if d.is_dir() for p in d.glob("*.yaml")
                   if not p.name.startswith("_")})


def find_suite(name: str, recipe_dir: Path | None = None) -> Path:
    """A suite by name (searched in suites/ dirs) or by path to a YAML file."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        for base in ([recipe_dir] if recipe_dir else []) + [Path.cwd()]:
            if (base / name).is_file():
                return (base / name).resolve()
        raise ConfigError(f"suite file '{name}' not found")
    for directory in search_dirs(recipe_dir):
        if (directory / f"{name}.yaml").is_file():
            return directory / f"{name}.yaml"
    raise ConfigError(f"unknown suite '{name}'{did_you_mean(name, available(recipe_dir))}")


def load_suite(name: str, recipe_dir: Path | None = None) -> SuiteConfig:
    path = find_suite(name, recipe_dir)
    data, lines = load_resolved(path, recipe_dir)
    return parse_suite(data, path, lines)


def deep_merge(base: Any, override: Any) -> Any:
    """Mappings merge key by key (the override wins); anything else is replaced whole."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: deep_merge(base.get(k), v) if k in base else v for k, v in override.items()}}
    return override


def _include_path(ref: str, including: Path, recipe_dir: Path | None) -> Path:
    """An include is a path relative to the including file, or a suite name."""
    candidate = (including.parent / ref)
    if candidate.is_file():
        return candidate.resolve()
    if ref.endswith((".yaml", ".yml")) and not candidate.exists():
        raise ConfigError(f"{including}: include: file '{ref}' not found (relative to {including.parent})")
    return find_suite(ref, recipe_dir).resolve()


def load_resolved(path: Path, recipe_dir: Path | None = None,
                  chain: tuple[Path, ...] = ()) -> tuple[Any, dict]:
    """A suite file with its `include:` parts merged in (in order; the including file wins).

    Line numbers stay those of the including file, which is where a user edits."""
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"{chain[-1]}: include: cycle {cycle}")
    data, lines = load_yaml(path)
    if not isinstance(data, dict) or "include" not in data:
        return data, lines
    refs = data.pop("include")
    refs = [refs] if isinstance(refs, str) else refs
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise ConfigError(f"{path}:{line_of(lines, ('include',))}: include: give a file path or suite name, "
                          "or a list of them")
    merged: dict[str, Any] = {}
    for ref in refs:
        part, _ = load_resolved(_include_path(ref, path, recipe_dir), recipe_dir, (*chain, path))
        if not isinstance(part, dict):
            raise ConfigError(f"{path}: include: '{ref}' is not a mapping")
        merged = deep_merge(merged, part)
    return deep_merge(merged, data), lines


def parse_suite(data: Any, path: Path | None = None, lines: dict | None = None) -> SuiteConfig:
    """A suite file's data validated by its kind's config; every problem at once (`ConfigProblems`)."""
    problems = Problems(str(path) if path else "<suite>", lines)
    if not isinstance(data, dict) or "kind" not in data:
        problems.add((), "a suite is a mapping with 'name:' and 'kind:'")
        problems.raise_if_any()
    kind = str(data["kind"])
    if kind not in SUITE_KINDS:
        problems.add(("kind",), f"unknown suite kind '{kind}'{did_you_mean(kind, SUITE_KINDS.names())}")
        problems.raise_if_any()
    config_cls = SUITE_KINDS.get(kind).Config
    try:
        return config_cls.model_validate(data)
    except ValidationError as exc:
        problems.add_validation(exc, config_cls)
        problems.raise_if_any()
        raise  # unreachable: a ValidationError has at least one error
