"""Model families: one module per VLM architecture, each a `ModelFamily` registered with
`@MODEL_FAMILIES.register(name)` (see `_base`). The helpers below find a family by name, by the
`model_type` of a config, or by a `random:<shape>` name; nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

from harness.errors import ConfigError, ModelLoadError
from harness.registries import MODEL_FAMILIES
from harness.registry import did_you_mean

_INSTANCES: dict[str, Any] = {}


def family(name: str) -> Any:
    """The family registered as `name` (one instance per family: families hold no state)."""
    if name not in _INSTANCES:
        _INSTANCES[name] = MODEL_FAMILIES.get(name)()
    return _INSTANCES[name]


def families() -> list[Any]:
    return [family(name) for name in MODEL_FAMILIES.names()]


def model_types() -> dict[str, str]:
    """Every supported `model_type` → the family that reads it."""
    return {model_type: fam.name for fam in families() for model_type in fam.model_types}


_BY_TYPE: dict[str, str] = {}


def family_of_model_type(model_type: str | None, where: str = "the model") -> Any:
    """The family reading `model_type`; a one-line ModelLoadError listing the supported ones otherwise."""
    if isinstance(model_type, str) and model_type in _BY_TYPE:
        return family(_BY_TYPE[model_type])
    known = model_types()
    _BY_TYPE.update(known)
    if model_type not in known:
        raise ModelLoadError(f"{where} is a '{model_type}' model, which no model family reads; supported model "
                             f"types: {', '.join(sorted(known))}")
    return family(known[model_type])


def shapes() -> dict[str, str]:
    """Every `random:<shape>` → the family that declares it."""
    return {shape: fam.name for fam in families() for shape in fam.shapes}


def family_of_shape(shape: str) -> Any:
    """The family of `random:<shape>`; a one-line ConfigError with a did-you-mean otherwise."""
    known = shapes()
    if shape not in known:
        raise ConfigError(unknown_shape(shape, list(known)))
    return family(known[shape])


def unknown_shape(shape: str, known: list[str]) -> str:
    close = did_you_mean(shape, known)
    hint = close if close.startswith(" — ") else ""
    return f"unknown random shape '{shape}'{hint} (shapes: {', '.join(sorted(known))})"


def random_config(shape: str) -> tuple[Any, Any]:
    """(config, processor) of `random:<shape>`, whatever its family."""
    return family_of_shape(shape).random_config(shape)
