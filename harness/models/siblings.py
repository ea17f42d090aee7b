"""The nano siblings: each other model family's real architecture at nano's size, trained like nano.

`nano-internvl`, `nano-smolvlm`, `nano-llava-onevision` (one per family that declares a `sibling`
name and its `nano_dims`): 64 px input, nano's decoder dimensions and word-level vocabulary, the
family's own image tokens, processor and projector, trained on nano-VQA with nano's data and
settings (`harness.training.siblings`), so a cross-model recipe compares architectures offline.
This module names them, fingerprints their recipes and finds their checkpoints (shipped under
harness/builtin/<name>, or built into the user cache dir); loading never trains.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from harness.models.nano import SHIPPED as _NANO_SHIPPED

SIBLING_VERSION = "1"
REPORT = "nano_report.json"


def siblings() -> dict[str, str]:
    """Every sibling base name → the family it is built from."""
    from harness.models.families import families

    return {fam.sibling: fam.name for fam in families() if fam.sibling}


def is_sibling(reference: str) -> bool:
    return reference.startswith("nano-") and reference in siblings()


def family_of(name: str) -> Any:
    """The family of sibling `name`; a one-line ModelLoadError listing the siblings otherwise."""
    from harness.errors import ModelLoadError
    from harness.models.families import family

    known = siblings()
    if name not in known:
        raise ModelLoadError(f"'{name}' is not a nano sibling; siblings: {', '.join(sorted(known))}")
    return family(known[name])


def fingerprint(name: str) -> str:
    """Identity of a sibling's recipe: its dimensions, nano's training settings and the data version."""
    from harness.data.nano_vqa import GENERATOR_VERSION, IMAGE_SIZE
    from harness.models.nano import NANO_VERSION, TRAIN

    dims = family_of(name).nano_dims()
    blob = json.dumps([SIBLING_VERSION, NANO_VERSION, GENERATOR_VERSION, name, dims, TRAIN, IMAGE_SIZE],
                      sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def build(name: str, seed: int = 0) -> Any:
    """An untrained sibling (seeded weights, train mode off) as a LoadedModel."""
    fam = family_of(name)
    config, processor = fam.nano_config()
    return fam.build(config, processor, name, seed)


def shipped_checkpoint(name: str) -> Path | None:
    """The checkpoint committed with the package, if it was built from this exact recipe."""
    shipped = _NANO_SHIPPED.parent / name
    report = shipped / REPORT
    if report.exists() and json.loads(report.read_text()).get("fingerprint") == fingerprint(name):
        return shipped
    return None


def checkpoint_dir(name: str) -> Path:
    from harness.paths import cache_dir

    return cache_dir() / "nano" / f"{name}-{fingerprint(name)}"


def find_sibling(name: str) -> Path:
    """The checkpoint of this sibling's recipe: built in the cache, else shipped; one line otherwise."""
    from harness.errors import ModelLoadError

    path = checkpoint_dir(name)
    if (path / REPORT).exists():
        return path
    shipped = shipped_checkpoint(name)
    if shipped is not None:
        return shipped
    raise ModelLoadError(f"the nano sibling {name} ({fingerprint(name)}) is not built; build it with "
                         f"`harness reference build --model {name}` (a step costs 0.8-1.3x nano's)")
