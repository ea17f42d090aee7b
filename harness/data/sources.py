"""Load a suite's dataset only through `datasets`: the generated nano-VQA set, a local file or
folder (parquet / json / imagefolder), or a hub id from the local cache when offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from harness.errors import DataError

LOCAL_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str  # "nano-vqa", a local path, or a hub id
    config: str | None = None
    split: str = "test"


def load_split(spec: DatasetSpec, base_dir: Path | None = None) -> Any:
    import datasets

    if spec.name == "nano-vqa":
        from harness.data.nano_vqa import SPLITS, load_nano_vqa

        if spec.split not in SPLITS:
            raise DataError(f"nano-vqa has no split '{spec.split}'; use one of {list(SPLITS)}")
        return load_nano_vqa(spec.split)
    path = Path(spec.name)
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        path = base_dir / path
    try:
        if path.is_file():
            builder = LOCAL_BUILDERS.get(path.suffix)
            if builder is None:
                raise DataError(f"dataset file '{path}': unsupported type '{path.suffix}'; "
                                f"use {sorted(LOCAL_BUILDERS)}")
            return datasets.load_dataset(builder, data_files={spec.split: str(path)}, split=spec.split)
        if path.is_dir():
            return datasets.load_dataset(str(path), spec.config, split=spec.split)
        return datasets.load_dataset(spec.name, spec.config, split=spec.split)
    except (FileNotFoundError, ConnectionError, OSError) as exc:
        raise DataError(
            f"dataset '{spec.name}' (config {spec.config}, split {spec.split}) is not available offline "
            f"({str(exc).splitlines()[0][:120]}); download it where there is network or give a local path") from None
    except ValueError as exc:
        raise DataError(f"dataset '{spec.name}': {str(exc).splitlines()[0][:200]}") from None
