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


def decode_image(value: Any, root: Path | None = None) -> Any:
    """An RGB PIL image from what a dataset row holds: a PIL image, `{bytes, path}` as the
    `datasets` Image feature stores it undecoded, a file path (relative to `root`), or a list of
    those (multi-image rows: the first image, FastVLM takes one). Raises ValueError with the reason."""
    import io

    from PIL import Image, UnidentifiedImageError

    if isinstance(value, (list, tuple)):
        value = next((v for v in value if v is not None), None)
    if value is None:
        raise ValueError("no image")
    if hasattr(value, "convert"):
        return value.convert("RGB")
    try:
        if isinstance(value, dict) and value.get("bytes"):
            image = Image.open(io.BytesIO(value["bytes"]))
        elif isinstance(value, (dict, str)):
            if isinstance(value, dict) and not value.get("path"):
                raise ValueError("empty image (no bytes, no path)")
            path = Path(value["path"] if isinstance(value, dict) else value)
            if not path.is_absolute() and root is not None:
                path = root / path
            if not path.is_file():
                raise ValueError(f"image file '{path}' does not exist")
            image = Image.open(path)
        else:
            raise ValueError(f"not an image ({type(value).__name__})")
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"image does not decode ({type(exc).__name__})") from None
    return image.convert("RGB")
