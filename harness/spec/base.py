"""What every part of the recipe's data model shares: frozen, strict pydantic models and the
pattern of a name (of a recipe, a variant, a search slot)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"


class Strict(BaseModel):
    """Unknown fields are errors (a typo never passes silently); values never change after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)
