"""Layer helpers the weight-changing steps share: which layers a step acts on, the checks on the
recipe's `ignore` patterns and `group_size`, and how one layer is swapped for another.

Torch is imported inside the functions: the step modules import this one at their top, and the
registry imports every step module when it discovers them (validating a recipe stays torch-free).
"""

from __future__ import annotations

import fnmatch
from typing import Any

from harness.errors import StepError


def check_ignore(step: str, loaded: Any, ignore: list[str]) -> None:
    """Every `ignore` pattern must match some module name: a typo would otherwise quietly ignore nothing."""
    names = [name for name, _ in loaded.model.named_modules()]
    for pattern in ignore:
        if not any(fnmatch.fnmatch(name, pattern) for name in names):
            raise StepError(f"step '{step}': ignore pattern '{pattern}' matches no module; fix or remove it")


def component_layers(loaded: Any, components: tuple[str, ...], ignore: list[str],
                     kinds: tuple[type, ...]) -> dict[str, dict[str, Any]]:
    """Component → {qualified name: module} of the modules of type `kinds` in each target component,
    minus those matching an `ignore` pattern (in `named_modules` order)."""
    found: dict[str, dict[str, Any]] = {component: {} for component in components}
    for component in components:
        for prefix, root in loaded.component_modules(component).items():
            for name, module in root.named_modules():
                qualified = f"{prefix}.{name}" if name else prefix
                if isinstance(module, kinds) and not any(fnmatch.fnmatch(qualified, p) for p in ignore):
                    found[component][qualified] = module
    return found


def linear_layers(loaded: Any, components: tuple[str, ...], ignore: list[str]) -> dict[str, list[str]]:
    """Qualified names of the Linear layers per target component, minus `ignore` patterns."""
    import torch

    return {component: list(modules) for component, modules
            in component_layers(loaded, components, ignore, (torch.nn.Linear,)).items()}


def check_group_size(step: str, loaded: Any, names: list[str], group_size: int) -> None:
    """Group-wise weight quantization needs every chosen Linear's in_features split into whole groups."""
    if group_size == -1:  # per channel: one group per row
        return
    for name in names:
        in_features = loaded.model.get_submodule(name).in_features
        if in_features % group_size:
            raise StepError(f"step '{step}': group_size {group_size} does not divide in_features "
                            f"{in_features} of layer '{name}'; use a divisor of it, -1, or ignore that layer")


def replace_module(root: Any, qualified_name: str, module: Any) -> None:
    """Put `module` at `qualified_name` inside `root` (how a step swaps one layer for its quantized form)."""
    parent, _, leaf = qualified_name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)
