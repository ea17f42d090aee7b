"""Load a suite's dataset only through `datasets`: the generated nano-VQA set, a local file or
folder (parquet / json / imagefolder), a hub id found in a data directory (`<dir>/<hub id>/`,
the parquet layout `datasets` itself reads), or a hub id from the local cache when offline.

Data directories come from `--data-dir`, FASTVLM_HARNESS_DATA (os.pathsep-separated) and the
recipe's `data_dirs`, in that order, and are searched before the hub cache: that is how a user
with local copies runs the real suites without network, and how the tests point the shipped
suites at fixture datasets. Nothing is downloaded by this module; a dataset that is not found is
one clear line naming the id, where it looked and how to provide it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import DataError

LOCAL_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}
DATA_ENV = "FASTVLM_HARNESS_DATA"
CONFIG_COLUMN = "_config"  # added when a suite reads several configs (MMMU's subjects)


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str  # the generated set ("nano-vqa"), a local path, or a hub id
    config: str | None = None
    # several configs of one dataset read as one set (MMMU: one config per subject); each row gets
    # its config's name in the `_config` column (usable as `group_by: _config`)
    configs: list[str] | None = Field(None, min_length=1)
    split: str = "test"
    # keep only rows whose columns equal these values (SEED-Bench: {data_type: image})
    filter: dict[str, Any] | None = None

    def label(self) -> str:
        configs = self.configs or ([self.config] if self.config else [])
        return f"{self.name}" + (f" (config {', '.join(configs)})" if configs else "") + f", split {self.split}"


def _env_dirs() -> list[str]:
    """The search path as set so far (the environment carries it to variant workers)."""
    return [p for p in os.environ.get(DATA_ENV, "").split(os.pathsep) if p]


def data_dirs() -> list[Path]:
    """Where local copies of hub datasets are looked for, in order."""
    return list(dict.fromkeys(Path(d).expanduser().resolve() for d in _env_dirs()))


def use_data_dirs(dirs: list[Path]) -> None:
    """Put `dirs` first in this process's (and its workers') data search path."""
    for directory in dirs:
        if not directory.is_dir():
            raise DataError(f"--data-dir '{directory}' is not a directory")
    os.environ[DATA_ENV] = os.pathsep.join([str(d.resolve()) for d in dirs] + _env_dirs())


def append_data_dirs(dirs: list[str], base: Path) -> None:
    """A recipe's `data_dirs` (relative to the recipe), searched after those already set."""
    resolved = [(base / Path(d).expanduser()).resolve() for d in dirs]
    for directory in resolved:
        if not directory.is_dir():
            raise DataError(f"recipe data_dirs: '{directory}' is not a directory")
    os.environ[DATA_ENV] = os.pathsep.join(dict.fromkeys(_env_dirs() + [str(d) for d in resolved]))


def load_split(spec: DatasetSpec, base_dir: Path | None = None) -> Any:
    """The split `spec` names, with its filter applied; configs concatenated."""
    import datasets

    if spec.configs and spec.config:
        raise DataError(f"dataset {spec.name}: give config or configs, not both")
    local = _local_copy(spec)
    if local is not None:
        data = local
    elif not spec.configs:
        data = _load_one(spec, spec.config, base_dir)
    else:
        parts = []
        for config in spec.configs:
            part = _load_one(spec, config, base_dir)
            parts.append(part.add_column(CONFIG_COLUMN, [config] * len(part)))
        try:
            data = datasets.concatenate_datasets(parts)
        except ValueError as exc:
            raise DataError(f"dataset {spec.label()}: configs have different columns "
                            f"({str(exc).splitlines()[0][:160]})") from None
    return _filtered(data, spec)


def _filtered(data: Any, spec: DatasetSpec) -> Any:
    if not spec.filter:
        return data
    for column in spec.filter:
        if column not in data.column_names:
            raise DataError(f"dataset {spec.label()}: filter column '{column}' is not in the dataset "
                            f"(columns: {', '.join(data.column_names)})")
    wanted = dict(spec.filter)
    columns = list(wanted)
    return data.filter(lambda *values: all(v == wanted[c] for c, v in zip(columns, values)),
                       input_columns=columns)


#: The generated datasets (no files: drawn from a seeded stream, cached) → their generator.
GENERATED = {"nano-vqa": "harness.data.nano_vqa"}


def generated(spec: DatasetSpec) -> Any:
    """The generator of a generated dataset; one line for a split it does not have."""
    import importlib

    from harness.data._generated import SPLITS

    if spec.split not in SPLITS:
        raise DataError(f"{spec.name} has no split '{spec.split}'; use one of {list(SPLITS)}")
    return importlib.import_module(GENERATED[spec.name]).GENERATOR


def _local_files(spec: DatasetSpec) -> tuple[list[str], list[tuple[str | None, str]], Path] | None:
    """A hub id's files of the split in the first data dir holding it (every config), the config
    each file belongs to, and the first folder; None when no data dir holds it."""
    from datasets.data_files import DataFilesDict, get_data_patterns

    if spec.name in GENERATED or Path(spec.name).expanduser().exists():
        return None
    configs = spec.configs or [spec.config]
    for directory in data_dirs():
        folders = [directory / spec.name / (c or "") for c in configs]
        if not folders[0].is_dir():
            continue
        files: list[str] = []
        owners: list[tuple[str | None, str]] = []
        for config, folder in zip(configs, folders):
            if not folder.is_dir():
                raise DataError(f"dataset {spec.label()}: {directory / spec.name} has no folder for config "
                                f"'{config}' (want {folder})")
            try:
                found = DataFilesDict.from_patterns(get_data_patterns(str(folder)), base_path=str(folder))
            except FileNotFoundError:
                found = {}
            if spec.split not in found:
                splits = ", ".join(map(str, found)) or "none"
                raise DataError(f"dataset {spec.label()}: no split '{spec.split}' in {folder} "
                                f"(splits there: {splits}; files are named <split>-*.parquet)")
            files += list(found[spec.split])
            owners += [(config, f) for f in found[spec.split]]
        return files, owners, folders[0]
    return None


def _local_copy(spec: DatasetSpec) -> Any:
    """A hub id's local copy from the first data dir holding it, or None.

    The files of every config are found with `datasets`' own split patterns (`<split>-*.parquet`,
    `data/<split>-*`, ...) and read in ONE `load_dataset` call: loading 30 MMMU subjects one by one
    costs a builder and an Arrow cache each; the `_config` column comes from per-file row counts."""
    import datasets

    found = _local_files(spec)
    if found is None:
        return None
    files, owners, folder = found
    builder = LOCAL_BUILDERS.get(Path(files[0]).suffix)
    if builder is None:
        raise DataError(f"dataset {spec.label()}: unsupported file type '{Path(files[0]).suffix}' in {folder}")
    data = _call(spec, lambda: datasets.load_dataset(builder, data_files={spec.split: files}, split=spec.split))
    if spec.configs:
        data = data.add_column(CONFIG_COLUMN, _file_labels(owners))
    return data


def probe(spec: DatasetSpec, base_dir: Path | None = None) -> list[str] | None:
    """Whether the split is available here, without reading it (`harness run`'s preflight): its
    columns when they are cheap to know (nano-VQA, parquet schemas), None when only its presence
    is; a `DataError` saying where it looked and how to provide it when it is not available."""
    if spec.name in GENERATED:
        from harness.data._generated import COLUMNS

        generated(spec)
        return list(COLUMNS)
    path = Path(spec.name).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        path = base_dir / path
    if path.exists():
        return _parquet_columns([str(path)]) if path.is_file() else None
    found = _local_files(spec)
    if found is not None:
        columns = _parquet_columns(found[0])
        return columns + [CONFIG_COLUMN] if columns is not None and spec.configs else columns
    if _in_hub_cache(spec.name):
        return None
    raise _not_available(spec, spec.config or (spec.configs or [None])[0], data_dirs())


def _parquet_columns(files: list[str]) -> list[str] | None:
    if not files or not all(f.endswith(".parquet") for f in files):
        return None
    import pyarrow.parquet as pq

    return list(pq.read_schema(files[0]).names)


def _in_hub_cache(name: str) -> bool:
    """A hub dataset `datasets` downloaded before (its repo folder in the hub cache)."""
    from huggingface_hub.constants import HF_HUB_CACHE

    folder = Path(HF_HUB_CACHE) / f"datasets--{name.replace('/', '--')}"
    return (folder / "snapshots").is_dir() and any((folder / "snapshots").iterdir())


def _not_available(spec: DatasetSpec, config: str | None, dirs: list[Path]) -> DataError:
    sub = f"{spec.name}/{config}/" if config else f"{spec.name}/"
    looked = ", ".join(str(d / sub) for d in dirs) or f"no data dir (none given with --data-dir or {DATA_ENV})"
    return DataError(
        f"dataset {spec.name}" + (f" (config {config})" if config else "") + f", split {spec.split}, is not "
        f"available offline (looked in {looked} and the hub cache); provide it as parquet files "
        f"<data dir>/{sub}{spec.split}-*.parquet (or <data dir>/{sub}data/{spec.split}-*.parquet) and pass "
        "--data-dir <data dir>, set FASTVLM_HARNESS_DATA, or list the folder under the recipe's data_dirs "
        "(docs/suites.md)")


def _file_labels(owners: list[tuple[str | None, str]]) -> list[str | None]:
    import pyarrow.parquet as pq

    labels: list[str | None] = []
    for config, file in owners:
        labels += [config] * pq.read_metadata(file).num_rows
    return labels


def _load_one(spec: DatasetSpec, config: str | None, base_dir: Path | None) -> Any:
    import datasets

    if spec.name in GENERATED:
        from harness.data._generated import load_generated

        return load_generated(generated(spec), spec.split)
    path = Path(spec.name).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        path = base_dir / path
    if path.is_file():
        builder = LOCAL_BUILDERS.get(path.suffix)
        if builder is None:
            raise DataError(f"dataset file '{path}': unsupported type '{path.suffix}'; use {sorted(LOCAL_BUILDERS)}")
        return _call(spec, lambda: datasets.load_dataset(builder, data_files={spec.split: str(path)},
                                                         split=spec.split))
    if path.is_dir():
        return _call(spec, lambda: datasets.load_dataset(str(path), config, split=spec.split))
    dirs = data_dirs()
    return _call(spec, lambda: datasets.load_dataset(spec.name, config, split=spec.split), dirs, config)


def _call(spec: DatasetSpec, load: Any, dirs: list[Path] | None = None, config: str | None = None) -> Any:
    """Run a `datasets` load, turning its errors into one line that says what to do."""
    try:
        return load()
    except ValueError as exc:
        first = str(exc).splitlines()[0]
        if "split" in first.lower():
            raise DataError(f"dataset {spec.label()}: no split '{spec.split}' ({first[:200]})") from None
        raise DataError(f"dataset {spec.label()}: {first[:200]}") from None
    except (FileNotFoundError, ConnectionError, OSError, RuntimeError) as exc:
        if dirs is None:
            raise DataError(f"dataset {spec.label()}: cannot be read ({str(exc).splitlines()[0][:160]})") from None
        raise _not_available(spec, config, dirs) from None
