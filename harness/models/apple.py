"""Apple's own FastVLM checkpoints (`model_type: llava_qwen2`): read them directly, offline.

What people download — `apple/FastVLM-0.5B|1.5B|7B` from the hub, or the
`llava-fastvithd_*_stage2|3` directories of apple/ml-fastvlm — is LLaVA's Qwen2 layout with
custom code. The harness never runs that code (no `trust_remote_code`, no `.py` or pickled
`.bin` file is opened): it reads `config.json`, the tokenizer files and the safetensors shards,
maps config and weights to transformers' `fast_vlm` in process (`_apple_convert`,
`_apple_mapping`), and keeps the converted copy in the user cache under a content hash of the
source files, so the second load is a plain `from_pretrained`. `harness convert` writes the same
directory where the user asks.

Checks that read no tensor (config fields, tower name, projector type, shards present, headers
readable, projector widths from the header shapes) run here, fast, so preflight can call them;
each failure is one line naming the file or field and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import ModelLoadError
from harness.models._apple_mapping import APPLE_VISION, TOKENIZER_FILES, AppleCheckpoint

APPLE_MODEL_TYPE = "llava_qwen2"
#: Bumped when the conversion changes what it writes: the cache key includes it.
CONVERSION_VERSION = "1"
#: Apple's MobileCLIP image towers by name (the name's first two `_` parts, as Apple's
#: `load_model_config` reads them) → default input size. `mobileclip_l` is FastViTHD.
TOWERS = {"mobileclip_l": 1024}
#: LLaVA projector types `fast_vlm` can express (Linear → GELU → Linear).
PROJECTORS = ("mlp2x_gelu",)
#: Apple projector types that exist but `fast_vlm` has no module for.
OTHER_PROJECTORS = re.compile(r"^(linear|identity|mlp\d+x_gelu)$")
INDEX = "model.safetensors.index.json"
MARKER = "harness_apple.json"
#: The tower's last conv (MobileOneBlock `conv_exp`), reparameterised or in training form.
FINAL_CONV = ("conv_exp.reparam_conv.weight", "conv_exp.rbr_conv.0.conv.weight")


def inspect(path: Path) -> AppleCheckpoint:
    """The fast checks of an Apple checkpoint (no tensor is read); one-line ModelLoadError each."""
    config_file = path / "config.json"
    config = json.loads(config_file.read_text())
    tower, image_size = _tower(config, config_file)
    _projector(config, config_file)
    for name in ("mm_hidden_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                 "intermediate_size"):
        if not isinstance(config.get(name), int):
            raise ModelLoadError(f"'{config_file}' has no integer '{name}'; restore Apple's config.json")
    shards, shapes = _shards(path)
    _projector_width(config, config_file, shapes)
    return AppleCheckpoint(path=path, config=config, shards=shards, image_size=image_size, tower=tower)


def _tower(config: dict[str, Any], config_file: Path) -> tuple[str, int]:
    name = config.get("mm_vision_tower") or config.get("vision_tower")
    if not isinstance(name, str):
        raise ModelLoadError(f"'{config_file}' has no 'mm_vision_tower'; restore Apple's config.json")
    family = "_".join(name.split("_")[:2])
    if family not in TOWERS:
        raise ModelLoadError(
            f"'{config_file}': mm_vision_tower '{name}' is not a vision tower the harness can map "
            f"(known: {', '.join(f'{t}[_<size>]' for t in TOWERS)}, Apple's FastViTHD)")
    suffix = name[len(family):].lstrip("_")
    if suffix and not suffix.isdigit():
        raise ModelLoadError(f"'{config_file}': mm_vision_tower '{name}' ends in '{suffix}', not an input size "
                             f"(e.g. {family}_1024)")
    return family, int(suffix) if suffix else TOWERS[family]


def _projector(config: dict[str, Any], config_file: Path) -> None:
    kind = config.get("mm_projector_type", "linear")  # LLaVA's own default when the field is absent
    if kind in PROJECTORS:
        return
    why = ("fast_vlm's projector is Linear → GELU → Linear" if isinstance(kind, str) and OTHER_PROJECTORS.match(kind)
           else "it is not a LLaVA projector type")
    raise ModelLoadError(f"'{config_file}': mm_projector_type '{kind}' cannot be converted ({why}); "
                         f"supported: {', '.join(PROJECTORS)}")


def _shards(path: Path) -> tuple[list[Path], dict[str, tuple[int, ...]]]:
    """The safetensors files — those the index names (each must exist), else every
    `*.safetensors` — and every tensor's shape, from the headers."""
    index = path / INDEX
    if index.exists():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
            raise ModelLoadError(f"'{index}' is not a safetensors index (no 'weight_map'); restore it") from None
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise ModelLoadError(f"'{index}' names {len(missing)} shard(s) that are not in '{path}' "
                                 f"(first: {missing[0]}); download the missing shard(s) again")
        shards = [path / n for n in names]
    else:
        shards = sorted(path.glob("*.safetensors"))
    if not shards:
        raise ModelLoadError(f"'{path}' has no .safetensors weights (pickled .bin weights are refused); "
                             "download the safetensors files of the checkpoint")
    shapes: dict[str, tuple[int, ...]] = {}
    for shard in shards:
        shapes.update(_header(shard))
    return shards, shapes


def _header(shard: Path) -> dict[str, tuple[int, ...]]:
    """The shard's tensor shapes, once its header parses and its tensors fit in the file (a
    truncated download usually keeps its header and loses the end)."""
    size = shard.stat().st_size
    try:
        with shard.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if length <= 0 or 8 + length > size:
                raise ValueError("header length out of range")
            header = json.loads(handle.read(length))
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        end = max((v["data_offsets"][1] for v in tensors.values()), default=0)
        shapes = {k: tuple(v["shape"]) for k, v in tensors.items()}
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise ModelLoadError(f"'{shard}' is not a readable safetensors file; download it again") from None
    if 8 + length + end > size:
        raise ModelLoadError(f"'{shard}' is truncated ({size} bytes, its header needs {8 + length + end}); "
                             "download it again")
    return shapes


def _projector_width(config: dict[str, Any], config_file: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """mm_hidden_size = the tower's output channels = the projector's input; its output = hidden_size."""
    tower = next((shapes[APPLE_VISION + k] for k in FINAL_CONV if APPLE_VISION + k in shapes), None)
    first, second = shapes.get("model.mm_projector.0.weight"), shapes.get("model.mm_projector.2.weight")
    if tower is None or first is None or second is None or len(first) != 2 or len(second) != 2:
        raise ModelLoadError(f"'{config_file.parent}' has no FastViT final conv (conv_exp) or no mm_projector.0/.2 "
                             "weights; it is not a complete stage-2/3 FastVLM checkpoint")
    if not config["mm_hidden_size"] == tower[0] == first[1]:
        raise ModelLoadError(
            f"'{config_file}': mm_hidden_size {config['mm_hidden_size']}, the vision tower gives {tower[0]} channels "
            f"and the projector takes {first[1]}; they must agree (mismatched projector width)")
    if not config["hidden_size"] == first[0] == second[1] == second[0]:
        raise ModelLoadError(
            f"'{config_file}': hidden_size {config['hidden_size']} but the projector maps {first[1]} → {first[0]} "
            f"→ {second[0]}; they must agree (mismatched projector width)")


def source_files(checkpoint: AppleCheckpoint) -> list[Path]:
    """Every file the conversion reads (and so the cache key covers); never a `.py` or `.bin` file."""
    path = checkpoint.path
    extra = [path / n for n in ("config.json", INDEX, *TOKENIZER_FILES) if (path / n).is_file()]
    return sorted(set(extra + checkpoint.shards))


def content_hash(checkpoint: AppleCheckpoint) -> str:
    """sha256 of the source files' names and bytes (and the conversion version). A file's digest is
    remembered by (path, size, mtime), so an unchanged checkpoint is not read twice."""
    digest = hashlib.sha256(f"apple-conversion {CONVERSION_VERSION}\n".encode())
    memo_file = _cache_root() / "file-hashes.json"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, json.JSONDecodeError):
        memo = {}
    for file in source_files(checkpoint):
        stat = file.stat()
        stamp = f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        if stamp not in memo:
            memo[stamp] = _file_digest(file)
        digest.update(f"{file.name}\0{memo[stamp]}\n".encode())
    _write_atomic(memo_file, json.dumps(memo, indent=0))
    return digest.hexdigest()


def _file_digest(file: Path) -> str:
    h = hashlib.sha256()
    with file.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def _cache_root() -> Path:
    from harness.paths import cache_dir

    root = cache_dir() / "apple"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def converted(path: Path) -> Path:
    """The cached `fast_vlm` copy of the Apple checkpoint at `path`, converted now if missing."""
    checkpoint = inspect(path)
    target = _cache_root() / content_hash(checkpoint)[:16]
    if not (target / MARKER).exists():
        if target.exists():  # a half-written copy from a killed conversion (no marker)
            shutil.rmtree(target)
        _convert_into(checkpoint, target)
    return target


def convert(source: Path, destination: Path) -> Path:
    """Write the `fast_vlm` directory of the Apple checkpoint `source` into `destination` (new or empty)."""
    checkpoint = inspect(source)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise ModelLoadError(f"'{destination}' exists and is not an empty directory; give a new output directory")
    destination.parent.mkdir(parents=True, exist_ok=True)
    _convert_into(checkpoint, destination)
    return destination


def _convert_into(checkpoint: AppleCheckpoint, target: Path) -> None:
    """Convert into a temporary sibling and rename it into place: a failed or killed conversion
    leaves nothing that looks finished."""
    from harness.models._apple_convert import write_fast_vlm

    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        record = write_fast_vlm(checkpoint, work)
        record.update({"source": str(checkpoint.path.resolve()), "conversion_version": CONVERSION_VERSION})
        (work / MARKER).write_text(json.dumps(record, indent=2))
        try:
            os.replace(work, target)
        except OSError:
            if not (target / MARKER).exists():  # not another worker's finished copy of the same source
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
