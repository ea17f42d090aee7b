"""Accuracy suite: answer every item greedily, score it with a registered metric, and report
the score with a 95 % CI overall and per group (e.g. question kind). Per-item results are kept
so retention and agreement against the baseline are computed as paired statistics.

Rows become items in `harness.suites._items` (prompt per model family, references in the
scorer's form); a bad row (undecodable image, empty or wrong-typed answer) either stops the suite
with one line naming the item and field (`on_bad_item: fail`, the default) or is recorded as
failed, scored 0 and counted in `failed_items` (`on_bad_item: record`) — never dropped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.data.sources import DatasetSpec, data_dirs, load_split
from harness.errors import DataError
from harness.registries import METRICS, SUITE_KINDS
from harness.registry import did_you_mean
from harness.results.stats import bootstrap_ci, proportion_ci
from harness.spec.suite_files import SuiteConfig
from harness.suites import _box_refs, _items
from harness.suites._box_refs import BoxReference
from harness.suites._context import SuiteContext
from harness.suites._images import ImageSource, image_sizes
from harness.suites._scored import ScoredKind, score_with_failures


class GenerationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_new_tokens: int = Field(16, gt=0)
    greedy: Literal[True] = True  # the only decoding a paired comparison of variants can use


class LiteConfig(BaseModel):
    """A seeded subset of `size` items, stratified by a column (sklearn train_test_split)."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    size: int = Field(gt=1)
    stratify_by: str | None = None
    seed: int = 0


class AccuracyConfig(SuiteConfig):
    kind: Literal["accuracy"] = "accuracy"
    dataset: DatasetSpec
    limit: int | None = Field(None, gt=0)
    batch_size: int = Field(32, gt=0)
    max_new_tokens: int = Field(8, gt=0)
    metric: str = "exact_match"
    question_column: str = "question"
    answer_column: str = "answer"
    group_by: str | None = None
    id_column: str = "id"
    # extra per-item fields a metric reads → dataset column (or list of columns, gathered into a list),
    # e.g. {options: choices} or {options: [choice_a, choice_b, choice_c, choice_d]}; fields the metric
    # names in `item_fields` are also copied from same-named columns without being listed here
    item_columns: dict[str, str | list[str]] = Field(default_factory=dict)
    # New fields default to None so that suite definitions written before them compare equal.
    # Jinja template over the row's columns (+ `choices`), or {model family (model_type): template,
    # default: template}; None → the question as is (nano-VQA)
    prompt: str | dict[str, str] | None = None
    image_column: str | list[str] | None = None  # None → "image"; a list → the first present image
    image_path: str | None = None  # Jinja template of an image file path (datasets that store paths)
    image_root: str | None = None  # where image_path is relative to: a data dir sub-folder or a path
    generation: GenerationConfig | None = None  # overrides max_new_tokens
    lite: LiteConfig | None = None
    answer_key: str | None = None  # answers are dicts (VQAv2: [{answer: ...}]): the key holding the text
    answer_index: bool | None = None  # the answer is an option index (AI2D, ScienceQA) → its letter
    on_bad_item: Literal["fail", "record"] | None = None  # None → fail
    # the reference is a Jinja template over the row instead of `answer_column` (VSR: label 1/0 → yes/no,
    # What'sUp: the first caption option)
    answer_template: str | None = None
    # the reference is the box in this column, converted to normalised [x1, y1, x2, y2] (RefCOCO's COCO xywh)
    box_reference: BoxReference | None = None
    # one item per entry of this list column, the entry in its place (lmms-eval's RefCOCO: one item per
    # referring expression); item ids get "#<position>"
    explode: str | None = None
    # options shown in a seeded per-item order (What'sUp lists the right caption first)
    shuffle_options: int | None = None

    @model_validator(mode="after")
    def _one_answer_source(self) -> AccuracyConfig:
        sources = [name for name, on in (("answer_template", self.answer_template), ("box_reference",
                   self.box_reference), ("answer_key", self.answer_key), ("answer_index", self.answer_index)) if on]
        if len(sources) > 1:
            raise ValueError(f"give one way to read the answer, not {' and '.join(sources)}")
        return self

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in METRICS:
            raise ValueError(f"unknown metric '{metric}'{did_you_mean(metric, METRICS.names())}")
        return metric

    def new_tokens(self) -> int:
        return self.generation.max_new_tokens if self.generation else self.max_new_tokens


# --- items ----------------------------------------------------------------------------------

def columns_needed(config: AccuracyConfig, template: str | None) -> list[str]:
    """Every dataset column the suite reads with this prompt template."""
    needed = answer_columns(config)
    uses_question = template is None or "question" in _items.template_variables(template)
    if uses_question:
        needed.append(config.question_column)
    needed += image_columns(config)
    for source in (template, config.image_path):
        if source:
            needed += sorted(_items.template_variables(source) - {"question", "choices"})
    needed += group_columns(config)
    if config.explode:
        needed.append(config.explode)
    if config.lite and config.lite.stratify_by:
        needed.append(config.lite.stratify_by)
    return list(dict.fromkeys(needed))


def answer_columns(config: AccuracyConfig) -> list[str]:
    """The columns the references are read from."""
    if config.box_reference:
        return [config.box_reference.column]
    if config.answer_template:
        return sorted(_items.template_variables(config.answer_template))
    return [config.answer_column]


def group_columns(config: AccuracyConfig) -> list[str]:
    """`group_by` is a column, or a Jinja template over the row (What'sUp: the preposition of a caption)."""
    if not config.group_by:
        return []
    return sorted(_items.template_variables(config.group_by)) if _is_template(config.group_by) else [config.group_by]


def _is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def _columns_wanted(config: AccuracyConfig, columns: list[str], wanted: list[str]) -> None:
    """Every column the suite needs, checked once: one line naming the first missing one."""
    for column in wanted:
        if column not in columns:
            raise DataError(f"suite '{config.name}': dataset {config.dataset.label()} has no column '{column}' "
                            f"(columns: {', '.join(columns)})")


def prepare(config: AccuracyConfig, dataset: Any, family: str | None = None,
            images: ImageSource | None = None, check_images: bool = True) -> list[_items.Prepared]:
    """Rows → items; bad rows raise (policy fail) or come back marked failed (policy record).
    With `images` (the items' image source) every image is checked too: scoring alone needs none.
    `check_images=False` only locates each item's image (the report's gallery reads a few)."""
    metric = METRICS.get(config.metric)()
    template = _items.pick_prompt(config.prompt, family)
    columns = dataset.column_names
    # scoring alone needs the answer columns; a run needs every column (before any image is read)
    _columns_wanted(config, columns, columns_needed(config, template) if images is not None else
                    answer_columns(config) + ([config.explode] if config.explode else []))
    ids = dataset[config.id_column] if config.id_column in columns else [str(i) for i in range(len(dataset))]
    extras = _item_columns(metric, config, dataset)
    sources = [s for s in (template, config.image_path, config.answer_template, config.group_by) if s]
    row_columns = [c for c in sorted(set().union(*(_items.template_variables(s) for s in sources)) |
                                     ({config.explode} if config.explode else set())) if c in columns]
    rows = {c: dataset[c] for c in row_columns}
    questions = dataset[config.question_column] if config.question_column in columns else [""] * len(dataset)
    answers = None if config.answer_template else dataset[answer_columns(config)[0]]
    groups = dataset[config.group_by] if config.group_by and not _is_template(config.group_by) else None
    out = []
    for index, position in _plan(config, rows, len(dataset)):
        item = _items.Prepared(id=str(ids[index]) + ("" if position is None else f"#{position}"), row=index,
                               group=groups[index] if groups is not None else None,
                               extras={name: values[index] for name, values in extras.items()})
        row = {c: rows[c][index] for c in row_columns}
        question = questions[index]
        if position is not None:  # the exploded column's entry stands for the whole column
            row[config.explode] = row[config.explode][position]
            question = row[config.explode] if config.question_column == config.explode else question
        _fill(config, item, row, question, answers[index] if answers is not None else None, template,
              images is not None)
        out.append(item)
    if images is not None and not check_images:
        return out
    sizes = _check_images(config, out, images) if images is not None else None
    if config.box_reference:
        _box_references(config, dataset, out, sizes)
    return out


def _plan(config: AccuracyConfig, rows: dict[str, list[Any]], n: int) -> list[tuple[int, int | None]]:
    """(row, position in the exploded column) per item: one item per row, or one per list entry."""
    if not config.explode:
        return [(i, None) for i in range(n)]
    plan = []
    for index, value in enumerate(rows[config.explode]):
        if not isinstance(value, (list, tuple)):
            raise DataError(f"suite '{config.name}': explode column '{config.explode}' row {index} is "
                            f"{type(value).__name__}, not a list")
        plan += [(index, k) for k in range(len(value))]
    return plan


def _fill(config: AccuracyConfig, item: _items.Prepared, row: dict[str, Any], question: Any, answer: Any,
          template: str | None, check_images: bool) -> None:
    """The item's question, references, options order, group and prompt; a bad field marks it (or raises)."""
    field = config.question_column
    try:
        if not isinstance(question, str):
            raise ValueError(f"expected text, got {type(question).__name__}")
        item.question = question
        if config.box_reference:
            field = config.box_reference.column
            _box_refs.corners(answer, config.box_reference)
            item.box = answer
        elif config.answer_template:
            field = "answer_template"
            item.references = _items.references_of(_items.render(config.answer_template, row, question, None),
                                                   None, False, None)
        else:
            field = config.answer_column
            item.references = _items.references_of(answer, config.answer_key, bool(config.answer_index),
                                                   item.extras.get("options"))
        if config.shuffle_options is not None and item.extras.get("options") is not None:
            field = "options"
            item.extras["options"], item.references = _items.shuffled(
                item.extras["options"], item.references, f"{config.shuffle_options}:{item.id}")
        if config.group_by and _is_template(config.group_by):
            field = "group_by"
            item.group = _items.render(config.group_by, row, question, None).strip() or None
        field = "prompt"
        item.prompt = _items.render(template, row, question, item.extras.get("options"))
        if check_images and config.image_path:
            field = "image_path"
            item.image = _items.render(config.image_path, row, "", None)
    except (ValueError, DataError) as exc:
        _bad(config, item, field, exc)


def _box_references(config: AccuracyConfig, dataset: Any, items: list[_items.Prepared],
                    sizes: dict[int, tuple[int, int]] | None) -> None:
    """Each valid item's box as a normalised reference; the image size is also kept as item fields, so
    pixel-box metrics (box_iou_pixels) can read the prediction."""
    spec = config.box_reference
    assert spec is not None
    todo = [it for it in items if not it.failed]
    if set(_box_refs.SIZE_COLUMNS) <= set(dataset.column_names):
        widths, heights = (dataset[c] for c in _box_refs.SIZE_COLUMNS)
        known = {it.row: (widths[it.row], heights[it.row]) for it in todo}
    elif sizes is not None:
        known = sizes
    else:  # scoring without a run: read the image headers
        known = image_sizes(ImageSource(dataset, image_columns(config), None), todo)
    for item in todo:
        size = known.get(item.row)
        try:
            item.references = [_box_refs.reference(item.box, spec, size)]
        except ValueError as exc:
            _bad(config, item, spec.column, exc)
            continue
        if size is not None:
            item.extras.setdefault("image_width", size[0])
            item.extras.setdefault("image_height", size[1])


def image_columns(config: AccuracyConfig) -> list[str]:
    """The columns holding the image ([] when images are files named by `image_path`)."""
    if config.image_path:
        return []
    column = config.image_column or "image"
    return [column] if isinstance(column, str) else list(column)


def _bad(config: AccuracyConfig, item: _items.Prepared, field: str, exc: Exception) -> None:
    """The bad-item policy: one line naming the item and field, or the item marked failed."""
    if (config.on_bad_item or "fail") == "fail":
        raise DataError(f"suite '{config.name}': item '{item.id}' field '{field}': {exc} "
                        "(fix the data, or set on_bad_item: record to count it as failed)") from None
    item.failed = f"{field}: {exc}"


def _check_images(config: AccuracyConfig, items: list[_items.Prepared],
                  source: ImageSource) -> dict[int, tuple[int, int]]:
    """Decode every image once before any generation; keep a content digest for the response cache.
    Returns each decoded row's image size (box references are normalised by it)."""
    from harness.suites._response_cache import image_hash

    field = "image_path" if config.image_path else "/".join(source.columns)
    todo = [it for it in items if not it.failed]
    sizes = {}
    for item, value in source.each_raw(todo):
        try:
            sizes[item.row] = _items.check_image(value, source.root)
        except ValueError as exc:
            _bad(config, item, field, exc)
            continue
        item.image_key = image_hash(value) or ""
    return sizes


def predict(session: Any, items: list[_items.Prepared], config: AccuracyConfig, images: ImageSource,
            cache: Any = None) -> list[str]:
    """Greedy answers for the valid items, in batches; the response cache (if any) is consulted first."""
    settings = {"max_new_tokens": config.new_tokens()}

    def generate(indices: list[int]) -> tuple[list[str], list[list[int]]]:
        chosen = [items[i] for i in indices]
        out = session.generate(images.decoded(chosen), [it.prompt for it in chosen], max_new_tokens=config.new_tokens())
        return out.texts, out.token_ids

    if cache is not None:  # look every item up; generate only the misses, in batches
        keys = [cache.key_from_digests(it.id, it.prompt, [it.image_key], settings) for it in items]
        return cache.answers(keys, generate, config.batch_size)
    answers: list[str] = []
    for begin in range(0, len(items), config.batch_size):
        answers += generate(list(range(begin, min(begin + config.batch_size, len(items)))))[0]
    return answers


def score_prepared(config: AccuracyConfig, prepared: list[_items.Prepared], answers: dict[int, str]) -> dict[str, Any]:
    """Score the answered items; failed items score 0, count in n, and stay out of corpus numbers."""
    metric = METRICS.get(config.metric)()
    items = []
    for index, it in enumerate(prepared):
        item = {"id": it.id, "group": it.group, "question": it.question, "references": it.references,
                "prediction": answers.get(index, ""), **it.extras}
        if it.failed:
            item |= {"prediction": None, "failed": it.failed}
        items.append(item)
    corpus, _ = score_with_failures(metric, items)
    return {"metric": config.metric, "higher_is_better": metric.higher_is_better,
            **_aggregate([it["score"] for it in items], metric.binary),
            "groups": {g: _aggregate([it["score"] for it in items if str(it["group"]) == g], metric.binary)
                       for g in sorted({str(it["group"]) for it in items if it["group"] is not None})},
            **({"corpus": corpus} if corpus else {}),
            "items": items}


def score_items(config: AccuracyConfig, dataset: Any, answers: list[str]) -> dict[str, Any]:
    """Score answers given in dataset order (no images needed): the scorer tests' entry point."""
    prepared = prepare(config, dataset)
    return score_prepared(config, prepared, dict(enumerate(answers)))


def _item_columns(metric: Any, config: AccuracyConfig, dataset: Any) -> dict[str, list[Any]]:
    """Values of the extra item fields: the suite's item_columns, and the metric's own fields when the
    dataset has same-named columns (a metric that cannot work without one says so itself)."""
    wanted: dict[str, str | list[str]] = {f: f for f in getattr(metric, "item_fields", ())
                                          if f in dataset.column_names}
    wanted |= config.item_columns
    out: dict[str, list[Any]] = {}
    for name, columns in wanted.items():
        for column in [columns] if isinstance(columns, str) else columns:
            if column not in dataset.column_names:
                raise DataError(f"suite '{config.name}': item_columns '{name}' names column '{column}', which dataset "
                                f"{config.dataset.name} lacks")
        out[name] = dataset[columns] if isinstance(columns, str) else \
            [list(row) for row in zip(*(dataset[c] for c in columns))]
    return out


def _aggregate(scores: list[float], binary: bool) -> dict[str, Any]:
    """Mean with a 95 % CI: Wilson for 0/1 scores, a bootstrap (scipy) for graded ones."""
    n = len(scores)
    mean = sum(scores) / n if n else float("nan")
    ci = proportion_ci(int(round(sum(scores))), n) if binary else bootstrap_ci(scores)
    return {"score": mean, "n": n, "ci": list(ci)}


# --- the suite ------------------------------------------------------------------------------

def model_family(artifact: Path) -> str | None:
    """The base model's `model_type` (fast_vlm, llava_qwen2, ...): what `prompt:` is keyed by."""
    from harness.build.artifact import read_build_record

    try:
        return read_build_record(artifact).get("base_config", {}).get("model_type")
    except Exception:  # an artifact without a build record (e.g. an exported file): default prompt
        return None


def select(config: AccuracyConfig, dataset: Any) -> Any:
    """The lite subset (seeded, stratified), then the first `limit` items."""
    if config.lite:
        labels = dataset[config.lite.stratify_by] if config.lite.stratify_by else None
        dataset = dataset.select(_items.lite_indices(labels, config.lite.size, config.lite.seed, len(dataset)))
    if config.limit:
        dataset = dataset.select(range(min(config.limit, len(dataset))))
    return dataset


def resolve_image_root(config: AccuracyConfig, recipe_dir: Path | None) -> Path | None:
    if not config.image_root:
        return None
    root = Path(config.image_root).expanduser()
    candidates = [root] if root.is_absolute() else \
        [d / root for d in data_dirs()] + ([recipe_dir / root] if recipe_dir else []) + [Path.cwd() / root]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise DataError(f"suite '{config.name}': image_root '{config.image_root}' not found (looked in "
                    f"{', '.join(str(c) for c in candidates)}); put the images there or pass --data-dir")


@SUITE_KINDS.register("accuracy", "score answers on a dataset with a metric, with 95 % CIs and per-group breakdown")
class Accuracy(ScoredKind):
    Config = AccuracyConfig

    def run(self, config: AccuracyConfig, ctx: SuiteContext) -> dict[str, Any]:
        dataset = select(config, load_split(config.dataset, ctx.recipe_dir))
        image_root = resolve_image_root(config, ctx.recipe_dir)
        family = model_family(ctx.artifact)
        images = ImageSource(dataset, image_columns(config), image_root)
        prepared = prepare(config, dataset, family, images)
        valid = [i for i, it in enumerate(prepared) if not it.failed]
        start = time.perf_counter()
        from harness.suites._response_cache import for_suite

        cache = for_suite(ctx, config.name, config.version)
        answers = predict(ctx.session(), [prepared[i] for i in valid], config, images, cache) if valid else []
        result = score_prepared(config, prepared, dict(zip(valid, answers)))
        metric = METRICS.get(config.metric)()
        result |= {"binary": metric.binary, "failed_items": len(prepared) - len(valid),
                   "family": family}
        result["cache"] = cache.summary()
        result["seconds"] = time.perf_counter() - start
        result["meaningful"] = not ctx.random_weights
        return result

    def required_columns(self, config: AccuracyConfig) -> list[str]:
        """The columns of FastVLM's prompt (another family's prompt is checked when the suite runs)."""
        from harness.errors import ConfigError

        try:
            return columns_needed(config, _items.pick_prompt(config.prompt, "fast_vlm"))
        except ConfigError:
            return columns_needed(config, None)

    def report_context(self, rows: list[dict[str, Any]], plan: dict[str, Any]) -> dict[str, Any]:
        """The sample gallery: where each variant answers differently from the baseline, with thumbnails."""
        from harness.suites._gallery import gallery

        return {**super().report_context(rows, plan), "gallery": gallery(rows, plan, gallery_images)}


def gallery_images(definition: dict[str, Any], wanted: set[str], recipe_dir: Path | None) -> dict[str, Any]:
    """Item id → decoded image for the items the gallery shows, located as the suite located them
    (lite subset and limit, exploded items, image columns or `image_path` files)."""
    config = AccuracyConfig.model_validate(definition)
    dataset = select(config, load_split(config.dataset, recipe_dir))
    source = ImageSource(dataset, image_columns(config), resolve_image_root(config, recipe_dir))
    chosen = [it for it in prepare(config, dataset, None, source, check_images=False)
              if it.id in wanted and not it.failed]
    return dict(zip([it.id for it in chosen], source.decoded(chosen), strict=True))
