"""Open user-given images with one clear error for files that are not images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import DataError


def open_image(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DataError(f"image '{path}' does not exist")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"'{path}' is not a readable image ({type(exc).__name__}); give a PNG or JPEG file") from None
    return image.convert("RGB")
