"""Where a suite's images come from: image columns of a `datasets` split (read undecoded, a
batch at a time, so one bad image is one bad item and a split's tens of GB are never held at once)
or files named per item (`image_path`). Shared by the accuracy suite and the report's gallery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.suites import _items


class ImageSource:
    """Raw image values of chosen rows, read a batch at a time (a whole split's image bytes can be
    tens of GB); image columns are cast to undecoded so one bad image is one bad item."""

    def __init__(self, dataset: Any, columns: list[str], root: Path | None) -> None:
        self.columns, self.root = columns, root
        self.dataset = _undecoded(dataset.select_columns(columns), columns) if columns else None

    def raw(self, items: list[_items.Prepared]) -> list[Any]:
        if self.dataset is None:
            return [it.image for it in items]
        batch = self.dataset[[it.row for it in items]]
        return [_first(list(values)) for values in zip(*(batch[c] for c in self.columns))]

    def each_raw(self, items: list[_items.Prepared], chunk: int = 64) -> Iterator[tuple[_items.Prepared, Any]]:
        """(item, raw image value) for every item, read `chunk` rows at a time."""
        for begin in range(0, len(items), chunk):
            part = items[begin:begin + chunk]
            yield from zip(part, self.raw(part), strict=True)

    def decoded(self, items: list[_items.Prepared]) -> list[Any]:
        from harness.data.images import decode_image

        return [decode_image(value, self.root) for value in self.raw(items)]


def _first(values: list[Any]) -> Any:
    """The first present image of a row's image columns (an image list counts by its first image)."""
    for value in values:
        if isinstance(value, (list, tuple)):
            value = _first(list(value))
        if value is not None:
            return value
    return None


def _undecoded(dataset: Any, columns: list[str]) -> Any:
    """Image columns as raw {bytes, path}: decoding is per item, so one bad image is one bad item."""
    import datasets

    for column in columns:
        feature = dataset.features.get(column)
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(column, datasets.Image(decode=False))
        elif isinstance(feature, (datasets.Sequence, list)):
            inner = feature.feature if isinstance(feature, datasets.Sequence) else feature[0]
            if isinstance(inner, datasets.Image) and inner.decode:
                dataset = dataset.cast_column(column, datasets.Sequence(datasets.Image(decode=False)))
    return dataset


def image_sizes(source: ImageSource, items: list[_items.Prepared]) -> dict[int, tuple[int, int]]:
    """Row → (width, height) of the items' images; rows whose image does not decode are left out."""
    out = {}
    for item, value in source.each_raw(items):
        try:
            out[item.row] = _items.check_image(value, source.root)
        except ValueError:
            continue
    return out
