"""Calibration data for steps that need activations (GPTQ, AWQ, Wanda, static INT8, sensitivity).

Steps name their data in the recipe (`calibration: {dataset: {name: nano-vqa, split: train},
items: 64}`); it is loaded through the same `datasets` path as the suites and turned into the
model's own processed inputs, so calibration sees exactly what inference sees. Calibration is
never needed on replay (loading a saved variant), only when building.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.data.sources import DatasetSpec
from harness.errors import StepError


class CalibrationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: DatasetSpec = DatasetSpec(name="nano-vqa", split="train")
    items: int = Field(64, gt=0, description="number of calibration examples")
    batch_size: int = Field(16, gt=0)
    seed: int = Field(0, ge=0, description="seed of the shuffle that picks the items (datasets needs >= 0)")
    with_answers: bool = Field(True, description="append the reference answer, so answer tokens are calibrated too")


def step_rows(dataset: DatasetSpec, items: int | None, seed: int, step: str, data_dir: Any,
              required: tuple[str, ...], purpose: str = "calibration") -> Any:
    """A step's data rows through `datasets`: loaded, checked for `required` columns and rows, then a
    seeded shuffle cut to `items` (all rows, unshuffled, when None). Every failure is one StepError."""
    from harness.data.sources import load_split
    from harness.errors import DataError

    try:
        data = load_split(dataset, data_dir)
    except DataError as exc:
        raise StepError(f"step '{step}': {purpose} data unavailable: {exc}") from None
    missing = [c for c in required if c not in data.column_names]
    if missing:
        raise StepError(f"step '{step}': {purpose} dataset '{dataset.name}' lacks column(s) {missing}; "
                        f"it needs {list(required)}")
    if len(data) == 0:
        raise StepError(f"step '{step}': {purpose} dataset '{dataset.name}' split '{dataset.split}' is empty")
    return data if items is None else data.shuffle(seed=seed).select(range(min(items, len(data))))


def calibration_batches(loaded: Any, spec: CalibrationSpec, step: str, data_dir: Any = None) -> list[dict[str, Any]]:
    """Processed model inputs (`pixel_values`, `input_ids`, `attention_mask`) for calibration."""
    rows = step_rows(spec.dataset, spec.items, spec.seed, step, data_dir, ("image", "question"))
    batches = []
    for start in range(0, len(rows), spec.batch_size):
        chunk = rows[start:start + spec.batch_size]
        inputs = loaded.prepare(chunk["image"], chunk["question"])
        if spec.with_answers and "answer" in chunk:
            inputs = _append_answers(loaded, inputs, chunk["answer"])
        inputs["pixel_values"] = inputs["pixel_values"].to(loaded.dtype)
        batches.append(dict(inputs))
    return batches


def _append_answers(loaded: Any, inputs: Any, answers: list[Any]) -> Any:
    """Append each answer's tokens (and EOS) after its left-padded prompt."""
    import torch

    tokenizer = loaded.processor.tokenizer
    suffixes = [tokenizer(str(a), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                for a in answers]
    width = max(len(s) for s in suffixes)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    extra_ids = torch.full((ids.shape[0], width), pad, dtype=ids.dtype)
    extra_mask = torch.zeros((ids.shape[0], width), dtype=mask.dtype)
    for row, suffix in enumerate(suffixes):  # right-pad answers; masked positions are ignored
        extra_ids[row, :len(suffix)] = torch.tensor(suffix)
        extra_mask[row, :len(suffix)] = 1
    inputs["input_ids"] = torch.cat([ids, extra_ids], dim=1)
    inputs["attention_mask"] = torch.cat([mask, extra_mask], dim=1)
    return inputs


def run_calibration(loaded: Any, batches: list[dict[str, Any]]) -> None:
    """One forward pass of the whole model per batch (hooks/observers see every component)."""
    import torch

    with torch.inference_mode():
        for batch in batches:
            loaded.model(**batch)
