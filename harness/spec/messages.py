"""One way to turn validation problems into one-line messages, and to report all of a file's
problems at once.

The recipe, its steps and suite files all say "unknown field 'x' — did you mean 'y'?" the same
way, name the location (`file:line: field: message`), and give unit hints where a number is
plainly in the wrong unit (`min_retention: 95` is a percentage where a fraction is wanted).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from harness.errors import ConfigError
from harness.registry import did_you_mean
from harness.spec.yamlio import Loc, line_of


class ConfigProblems(ConfigError):
    """Every problem found in one or more files, one line each (sorted by file and line)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


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


def _unit_hint(err: dict[str, Any]) -> str:
    """`a fraction: did you mean 0.95?` when a value bounded by ~1 was given as a percentage."""
    bound = (err.get("ctx") or {}).get("le", (err.get("ctx") or {}).get("lt"))
    value = err.get("input")
    if err["type"] in ("less_than_equal", "less_than") and isinstance(value, (int, float)) \
            and not isinstance(value, bool) and isinstance(bound, (int, float)) and bound <= 2 and 1 < value <= 100:
        return f" — it is a fraction: did you mean {value / 100:g}?"
    return ""


def error_message(err: dict[str, Any], model: type[BaseModel], owner: str = "") -> str:
    """The message of one pydantic error `err` raised while validating `model`; `owner` names what
    the fields belong to in the text (e.g. "step 'prune'")."""
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden" and loc:
        key = str(loc[-1])
        fields = [f for f in model_at(model, loc[:-1]).model_fields if f != "kind"]
        return f"unknown field '{key}'{' for ' + owner if owner else ''}{did_you_mean(key, fields)}"
    message = err["msg"].removeprefix("Value error, ")
    return message + _unit_hint(err)


class Problems:
    """The problems of one file, collected while checking it, raised together at the end."""

    def __init__(self, label: str, lines: dict[Loc, int] | None = None,
                 overridden: dict[Loc, str] | None = None) -> None:
        self.label = label
        self.lines = lines or {}
        #: Locations set by `--set` (and the override's text): problems there name the override.
        self.overridden = overridden or {}
        self._found: list[tuple[int, int, str]] = []

    def __bool__(self) -> bool:
        return bool(self._found)

    def _override_of(self, loc: Loc) -> str | None:
        return next((text for where, text in self.overridden.items() if loc[:len(where)] == where), None)

    def format(self, loc: Loc, message: str) -> str:
        field = ".".join(str(p) for p in loc) or "(top level)"
        override = self._override_of(loc)
        if override:
            return f"{override}: {field}: {message}"
        line = line_of(self.lines, loc)
        return f"{self.label}{':' + str(line) if line else ''}: {field}: {message}"

    def add(self, loc: Loc, message: str) -> None:
        line = 0 if self._override_of(loc) else line_of(self.lines, loc) or 0
        self._found.append((line, len(self._found), self.format(loc, message)))

    def add_line(self, text: str, line: int = 0) -> None:
        """A problem already worded with its own location (e.g. from another file)."""
        self._found.append((line, len(self._found), text))

    def add_validation(self, exc: ValidationError, model: type[BaseModel], prefix: Loc = (), owner: str = "") -> None:
        for err in exc.errors():
            self.add((*prefix, *err["loc"]), error_message(err, model, owner))

    def lines_found(self) -> list[str]:
        """Sorted by line, each once (a grid repeats a step's problem for every combination)."""
        return list(dict.fromkeys(text for _, _, text in sorted(self._found)))

    def raise_if_any(self) -> None:
        if self._found:
            raise ConfigProblems(self.lines_found())
