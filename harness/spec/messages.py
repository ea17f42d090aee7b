"""One way to turn a validation error into a one-line message: the recipe, its steps and suite
files all say "unknown field 'x' — did you mean 'y'?" the same way, naming the field's location."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from harness.registry import did_you_mean
from harness.spec.yamlio import Loc


def model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel]:
    """The pydantic model that holds the field at `loc` (list indices skipped)."""
    for part in loc:
        if isinstance(part, int) or str(part) not in model.model_fields:
            continue
        annotation = model.model_fields[str(part)].annotation
        args = getattr(annotation, "__args__", ())
        candidates = [a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            break
        model = candidates[0]
    return model


def error_message(err: dict[str, Any], model: type[BaseModel], owner: str = "") -> str:
    """The message of one pydantic error `err` raised while validating `model`; `owner` names what
    the fields belong to in the text (e.g. "step 'prune'")."""
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden" and loc:
        key = str(loc[-1])
        fields = [f for f in model_at(model, loc[:-1]).model_fields if f != "kind"]
        return f"unknown field '{key}'{' for ' + owner if owner else ''}{did_you_mean(key, fields)}"
    return err["msg"]
