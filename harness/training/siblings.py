"""Building the nano siblings (harness.models.siblings defines them) the way nano is built: the same
nano-VQA train split, nano's TRAIN settings (steps, images per batch, lr, warmup, seed), the same
validation and test scoring, into the user cache dir. `harness run` builds those a recipe names
once, visibly, before the workers; `harness reference build --model <sibling>` on request.

Only the language-model loss trains a sibling: nano's auxiliary heads read FastViT's 4x4 grid,
which a ViT family's tokens are not (docs/nano.md, "Nano siblings", says what that means).
"""

from __future__ import annotations

import time
from pathlib import Path

from harness.models import siblings
from harness.training.nano import build_into, fit_reference


def ensure_sibling(name: str, force: bool = False, progress: bool = True) -> Path:
    """Return the sibling's checkpoint (cache, else shipped), building (and training) it first if needed."""
    path = siblings.checkpoint_dir(name)
    if not force:
        if (path / siblings.REPORT).exists():
            return path
        shipped = siblings.shipped_checkpoint(name)
        if shipped is not None:
            return shipped
    return build_into(path, lambda tmp: train_sibling(name, tmp, progress=progress))


def train_sibling(name: str, out_dir: Path, progress: bool = True, train_overrides: dict | None = None,
                  rows: int | None = None) -> dict:
    """Train sibling `name` on nano-VQA train; save it; return timing, size and test accuracy.
    `rows` keeps the first rows of each split (a smoke build; the real build uses them all)."""
    import torch

    from harness.data.nano_vqa import load_nano_vqa
    from harness.models.nano import TRAIN
    from harness.training.batches import VQABatcher

    settings = {**TRAIN, **(train_overrides or {})}
    torch.manual_seed(settings["seed"])
    loaded = siblings.build(name, seed=settings["seed"])
    model, processor = loaded.model, loaded.processor
    start = time.perf_counter()
    train = load_nano_vqa("train")
    batcher = VQABatcher(processor, train if rows is None else train.select(range(rows)))
    report = fit_reference(model, processor, name, batcher, settings, out_dir, start, progress=progress,
                           validation_rows=min(240, rows or 240), test_rows=rows)
    return {"fingerprint": siblings.fingerprint(name), "sibling": name, "family": loaded.family.name,
            "parameters": sum(p.numel() for p in model.parameters()), "visual_tokens": loaded.visual_tokens,
            "auxiliary_heads": False, **report}
