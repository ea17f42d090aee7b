"""Preflight: everything that would stop a run, found in the parent process before any worker
starts and before anything is written — the base model resolves, every suite's data is here
(data dirs, then the offline hub cache) with the columns it reads, every runtime's modules are
installed, the output folder can be written. All problems are reported at once, one line each;
`harness validate --deep` runs the same checks. Fast: no model is loaded, no dataset read.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.spec.messages import ConfigProblems
from harness.spec.recipe import Recipe


def check_base(reference: str, revision: str | None = None) -> list[str]:
    """`nano` or a nano sibling (built before the workers start if missing), `random:<shape>`, a
    local checkpoint directory, or a hub id present in the offline hub cache."""
    from harness.models.loading import HUB_ID, check_checkpoint_dir, hub_snapshot, names_sibling

    if reference == "nano":
        return []
    if names_sibling(reference):  # built before the workers start, as nano is
        from harness.models.siblings import siblings

        known = siblings()
        return [] if reference in known else [f"base: '{reference}' is not a nano sibling; siblings: "
                                              f"{', '.join(sorted(known))}"]
    if reference.startswith("random:"):
        from harness.models.families import shapes, unknown_shape

        shape = reference.split(":", 1)[1]
        return [] if shape in shapes() else [f"base: {unknown_shape(shape, list(shapes()))}"]
    path = Path(reference).expanduser()
    try:
        if path.exists() or reference.startswith((".", "/", "~")) or not HUB_ID.match(reference):
            check_checkpoint_dir(path)
            return []
        snapshot = hub_snapshot(reference, revision)
        if snapshot is None:
            from huggingface_hub.constants import HF_HUB_CACHE

            return [f"base: '{reference}' is not in the local hub cache ({HF_HUB_CACHE}) and the harness never "
                    f"downloads; fetch it with `hf download {reference}` on a machine with network and copy that "
                    "cache here (HF_HOME), or give a local checkpoint directory"]
        check_checkpoint_dir(snapshot)
    except HarnessError as exc:
        return [f"base: {exc}"]
    return []


def bases(recipe: Recipe) -> dict[str | None, Any]:
    """Each base model the recipe's variants are built from, by its `models:` name (None: the
    recipe's one `base:`)."""
    return {model: recipe.model_base(model) for model in dict.fromkeys(v.model for v in recipe.variants)}


def check_steps(recipe: Recipe) -> list[str]:
    """A step that only some model family supports (its `specific_steps`), used on a base of another
    family, is refused here, one line per step and model, naming the base's family (in a
    cross-model recipe, each variant against its own model)."""
    from harness.models.families import families
    from harness.models.loading import base_family

    problems = []
    for model, base in bases(recipe).items():
        found = base_family(base.model, base.revision)
        if found is None:
            continue
        needs = {kind: need for fam in families() if fam.name != found.name
                 for kind, need in fam.specific_steps.items() if kind not in found.specific_steps}
        used: dict[str, list[str]] = {}
        for variant in recipe.variants:
            if variant.model == model:
                for raw in variant.steps:
                    used.setdefault(raw["kind"] if isinstance(raw, dict) else raw.kind, []).append(variant.name)
        article = "an" if found.name[0] in "aeiou" else "a"
        where = f"model '{model}' ('{base.model}')" if model is not None else f"base '{base.model}'"
        problems += [f"step '{kind}' needs {needs[kind]}; {where} is {article} {found.name} model"
                     + (f" (variants {', '.join(names)})" if model is not None else "")
                     for kind, names in used.items() if kind in needs]
    return problems


def families_of(recipe: Recipe) -> dict[str, str | None]:
    """Variant → the model family of its base (None where the base does not resolve: `check_base`
    says why), read without loading a model; recorded in the plan so results group by family."""
    from harness.models.loading import base_family

    found = {model: base_family(base.model, base.revision) for model, base in bases(recipe).items()}
    return {v.name: getattr(found.get(v.model), "name", None) for v in recipe.variants}


def check_suites(definitions: list[dict[str, Any]], recipe_dir: Path | None) -> list[str]:
    """Each suite kind's own preflight (its data is available and has the columns it reads)."""
    from harness.registries import SUITE_KINDS

    problems: list[str] = []
    for definition in definitions:
        kind = SUITE_KINDS.get(definition["kind"])
        problems += kind().preflight(kind.Config.model_validate(definition), recipe_dir)
    return problems


def check_runtimes(runtimes: list[str],
                   options: dict[str, dict[str, Any]] | None = None) -> tuple[list[str], list[str]]:
    """Every module a runtime imports is installed (presence only: importing coremltools alone takes
    8 s; a module that is present but fails to import says why when the runtime loads), and the
    runtime's own `preflight(options)` where it has one (a device runtime: its settings, adb, the
    device's state). Returns (problems, notes): a note is what the run records and goes on past."""
    from harness.registries import RUNTIMES

    problems, notes = [], []
    for name in runtimes:
        own = getattr(RUNTIMES.get(name), "preflight", None)
        if own is not None:
            found, noted = own((options or {}).get(name))
            problems += found
            notes += noted
        for module, extra in getattr(RUNTIMES.get(name), "requires", ()):
            if importlib.util.find_spec(module.split(".")[0]) is None:
                problems.append(f"runtime '{name}' needs the Python module '{module}', which is not installed: "
                                f"pip install 'fastvlm-harness[{extra}]'")
    return problems, notes


def check_output(output: Path) -> list[str]:
    """The run folder can be created under `output`: the nearest existing folder takes a file (a
    probe file, removed at once; permissions alone do not say it for root or read-only mounts)."""
    import tempfile

    if output.exists() and not output.is_dir():
        return [f"output '{output}' is a file; give a directory for run output (-o DIR or the recipe's output:)"]
    existing = next((p for p in (output, *output.parents) if p.exists()), Path("/"))
    if not existing.is_dir():
        return [f"output '{output}' cannot be created: '{existing}' is a file; choose another folder with -o DIR"]
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".harness-write-check-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        return [f"output '{output}' cannot be written ('{existing}': {exc.strerror}); choose another folder with "
                "-o DIR"]
    return []


def preflight(recipe: Recipe, definitions: list[dict[str, Any]], output: Path) -> list[str]:
    """Every problem at once as `ConfigProblems` (exit code 2); else the notes of what will be
    recorded not measured (e.g. no phone connected), one line each, for the plan and the terminal."""
    problems = []
    for model, base in bases(recipe).items():
        found = check_base(base.model, base.revision)
        problems += [f"models.{model}: {p.removeprefix('base: ')}" for p in found] if model is not None else found
    problems += check_steps(recipe)
    problems += check_suites(definitions, recipe.path.parent if recipe.path else None)
    found, notes = check_runtimes(recipe.spec.runtimes, recipe.spec.runtime_options)
    problems += found
    problems += check_output(output)
    if problems:
        label = str(recipe.path) if recipe.path else "<recipe>"
        raise ConfigProblems([f"{label}: {p}" for p in dict.fromkeys(problems)])
    return notes
