"""Accuracy items from dataset rows: prompts per model family, references in the scorer's form,
lite subsets, and the bad-item policy.

Why a module of its own: every shipped benchmark stores its question, options, answers and images
a little differently (answer lists of dicts in VQAv2, an option index in AI2D and ScienceQA, image
lists in SEED-Bench and MMMU). The accuracy suite stays one loop; the differences are data here,
declared in the suite file. Prompts are Jinja templates (lm-eval's `doc_to_text` convention) over
the row's columns plus `choices` (the options as "A. text" lines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from harness.errors import ConfigError, DataError

DEFAULT_FAMILY = "default"


@dataclass
class Prepared:
    """One item before generation: what the model sees, what the scorer gets, or why it is bad."""
    id: str
    row: int = 0  # index in the (selected) dataset: images are read from it a batch at a time
    prompt: str = ""
    image: Any = None  # a rendered image file path (suites with image_path), else None
    image_key: str = ""  # content digest of the image (response cache key)
    references: list[str] = field(default_factory=list)
    group: Any = None
    question: str = ""
    extras: dict[str, Any] = field(default_factory=dict)
    box: Any = None  # the raw reference box (box_reference suites), converted once the image size is known
    failed: str | None = None  # "field: reason" for a bad item


@lru_cache(maxsize=64)
def _template(source: str) -> Any:
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"prompt template {source[:60]!r}: {exc.message} (line {exc.lineno})") from None


def template_variables(source: str) -> set[str]:
    import jinja2
    from jinja2 import meta

    return set(meta.find_undeclared_variables(jinja2.Environment().parse(source)))


def pick_prompt(prompt: str | dict[str, str] | None, family: str | None) -> str | None:
    """The template for a model family (the base model's `model_type`), else the `default` one."""
    if prompt is None or isinstance(prompt, str):
        return prompt
    if family and family in prompt:
        return prompt[family]
    if DEFAULT_FAMILY in prompt:
        return prompt[DEFAULT_FAMILY]
    raise ConfigError(f"prompt: no template for model family '{family}' and no 'default' (have {sorted(prompt)})")


def choices_block(options: Any) -> str:
    """Options as lmms-eval writes them into the prompt: "A. text" per line."""
    from harness.metrics.multiple_choice import parse_options

    return "\n".join(f"{letter}. {text}" for letter, text in parse_options(options).items())


def render(template: str | None, row: dict[str, Any], question: str, options: Any) -> str:
    if template is None:
        return question
    values = {**row, "question": question}
    if options is not None:
        values["choices"] = choices_block(options)
    return _template(template).render(**values)


def references_of(value: Any, answer_key: str | None, answer_index: bool, options: Any) -> list[str]:
    """The references as a list of non-empty strings; ValueError saying what is wrong otherwise."""
    if answer_index:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"expected an option index, got {type(value).__name__} {value!r}")
        count = len(_options_dict(options))
        if not 0 <= value < count:
            raise ValueError(f"option index {value} out of range for {count} options")
        return [chr(ord("A") + value)]
    values = value if isinstance(value, list) else [value]
    out = []
    for entry in values:
        if isinstance(entry, dict) and answer_key:
            if answer_key not in entry:
                raise ValueError(f"answer entry has no key '{answer_key}' (keys: {sorted(entry)})")
            entry = entry[answer_key]
        if not isinstance(entry, str):
            raise ValueError(f"expected text, got {type(entry).__name__} {entry!r:.40}")
        out.append(entry)
    if not any(r.strip() for r in out):
        raise ValueError("empty answer")
    return out


def _options_dict(options: Any) -> dict[str, str]:
    from harness.metrics.multiple_choice import parse_options

    if options is None:
        raise ValueError("option index given but the item has no options")
    return parse_options(options)


def lite_indices(labels: list[Any] | None, size: int, seed: int, n: int) -> list[int]:
    """A seeded subset of `size` items, stratified by `labels` (sklearn's train_test_split), sorted."""
    if size >= n:
        return list(range(n))
    from sklearn.model_selection import train_test_split

    try:
        chosen, _ = train_test_split(list(range(n)), train_size=size, random_state=seed,
                                     stratify=[str(v) for v in labels] if labels is not None else None)
    except ValueError as exc:
        raise DataError(f"lite subset of {size} from {n} items: {exc}") from None
    return sorted(int(i) for i in chosen)


def check_image(value: Any, root: Any) -> tuple[int, int]:
    """Decode the image (ValueError with the reason if it does not) and return its (width, height)."""
    from harness.data.images import decode_image

    image = decode_image(value, root)
    size = image.size
    image.close()
    return size


def shuffled(options: Any, references: list[str], key: str) -> tuple[list[str], list[str]]:
    """The options in a seeded order (`key`: suite seed and item id) and the references moved with them:
    a reference letter becomes the letter its option now has; option text stays as it is."""
    import random

    original = _options_dict(options)
    letters = list(original)
    order = letters[:]
    random.Random(key).shuffle(order)
    new_letter = {old: chr(ord("A") + i) for i, old in enumerate(order)}
    return [original[old] for old in order], [new_letter.get(r.strip(), r) for r in references]
