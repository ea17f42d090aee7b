"""Resolve a base-model reference to a `LoadedModel`: `nano`, a nano sibling (`nano-internvl`,
`nano-smolvlm`, `nano-llava-onevision`: `harness.models.siblings`), `random:<shape>` (any family's
shape), a local checkpoint directory, or a hub id (offline: only from the local hub cache).

A directory's config.json `model_type` picks its model family (`harness.models.families`:
`fast_vlm`, `internvl`, `smolvlm`, `llava_onevision`); any other type is refused in one line that
lists the supported ones. A directory or hub id may also hold Apple's own `llava_qwen2` FastVLM
(hub `apple/FastVLM-*`, ml-fastvlm's stage-2/3 folders); the latter loads through its converted
copy in the user cache (`harness.models.apple`), never through its custom code.

Never unpickles: weights load through safetensors only; `trust_remote_code` stays off unless the
user asks for it (and never applies to Apple checkpoints).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, ModelLoadError, first_line
from harness.models.apple import APPLE_MODEL_TYPE as APPLE

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def load_model(reference: str, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    from harness.models.fastvlm import LoadedModel

    if reference == "nano":
        from harness.models.nano import find_nano

        path = find_nano()
        model, processor = _from_pretrained(str(path), None, False)
        return LoadedModel(model=model, processor=processor, source="nano", meta={"path": str(path)})
    if names_sibling(reference):
        from harness.models.siblings import find_sibling

        path = find_sibling(reference)
        model, processor = _from_pretrained(str(path), None, False)
        return LoadedModel(model=model, processor=processor, source=reference, meta={"path": str(path)})
    if reference.startswith("random:"):
        from harness.models.families import family_of_shape

        shape = reference.split(":", 1)[1]
        return family_of_shape(shape).random_model(shape)
    path = Path(reference).expanduser()
    if path.exists() or reference.startswith((".", "/", "~")) or not HUB_ID.match(reference):
        if check_checkpoint_dir(path) == APPLE:
            return _from_apple(path, str(path.resolve()))
        model, processor = _from_pretrained(str(path), None, trust_remote_code)
        return LoadedModel(model=model, processor=processor, source=str(path.resolve()),
                           meta={"path": str(path.resolve())})
    snapshot = hub_snapshot(reference, revision)
    if snapshot is not None and _model_type(snapshot / "config.json") == APPLE:
        check_checkpoint_dir(snapshot)
        return _from_apple(snapshot, reference)
    model, processor = _from_pretrained(reference, revision, trust_remote_code)
    return LoadedModel(model=model, processor=processor, source=reference)


def base_family(reference: str, revision: str | None = None) -> Any:
    """The model family of a base reference without loading it (config.json only), or None when the
    reference does not resolve (the preflight's `check_base` says why)."""
    from harness.models.families import family, family_of_shape, model_types

    if reference == "nano":
        return family("fastvlm")
    try:
        if names_sibling(reference):
            from harness.models.siblings import family_of

            return family_of(reference)
        if reference.startswith("random:"):
            return family_of_shape(reference.split(":", 1)[1])
    except HarnessError:
        return None
    path = Path(reference).expanduser()
    if not (path.exists() or reference.startswith((".", "/", "~")) or not HUB_ID.match(reference)):
        path = hub_snapshot(reference, revision) or path
    model_type = _model_type(path / "config.json")
    if model_type == APPLE:
        return family("fastvlm")
    known = model_types()
    return family(known[model_type]) if model_type in known else None


def names_sibling(reference: str) -> bool:
    """Whether `reference` means a nano sibling (`nano-<family>`, not a local folder of that name);
    an unknown `nano-*` name is refused by `siblings.family_of` in one line listing the siblings."""
    return reference.startswith("nano-") and not Path(reference).expanduser().exists()


def _from_apple(path: Path, source: str) -> Any:
    """An Apple checkpoint through its converted copy (made once, then reused from the cache)."""
    from harness.models.apple import converted
    from harness.models.fastvlm import LoadedModel

    target = converted(path)
    model, processor = _from_pretrained(str(target), None, False)
    return LoadedModel(model=model, processor=processor, source=source,
                       meta={"path": str(path.resolve()), "converted_from": "llava_qwen2", "converted": str(target)})


def hub_snapshot(repo: str, revision: str | None = None) -> Path | None:
    """The cached snapshot folder of a hub model (its config.json found offline), or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "config.json", revision=revision)
    return Path(found).parent if isinstance(found, str) else None


def _model_type(config_file: Path) -> Any:
    try:
        return json.loads(config_file.read_text()).get("model_type")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None


def check_checkpoint_dir(path: Path) -> str:
    """One-line errors for the usual ways a directory is not a checkpoint of a model family; returns
    its model type (`fast_vlm`, `internvl`, ..., or `llava_qwen2` for Apple's own FastVLM layout,
    checked by `apple.inspect`)."""
    if not path.exists():
        raise ModelLoadError(
            f"model path '{path}' does not exist; give a FastVLM checkpoint directory, a hub id, "
            "'nano' or 'random:fastvlm-0.5b'")
    if not path.is_dir():
        raise ModelLoadError(f"model path '{path}' is a file; give the checkpoint's directory")
    config_file = path / "config.json"
    if not config_file.exists():
        raise ModelLoadError(f"'{path}' is not a FastVLM checkpoint: it has no config.json")
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelLoadError(f"'{config_file}' is not valid JSON; restore or rebuild the checkpoint") from None
    if model_type == APPLE:
        from harness.models.apple import inspect

        inspect(path)
        return APPLE
    from harness.models.families import model_types

    supported = model_types()
    if model_type not in supported:
        others = ", ".join(f"'{t}' ({supported[t]})" for t in sorted(supported) if t != "fast_vlm")
        raise ModelLoadError(
            f"'{path}' holds a '{model_type}' model, not 'fast_vlm' (transformers' FastVLM), {others} or '{APPLE}' "
            "(Apple's own FastVLM layout); give a checkpoint of one of these model types")
    if not any(path.glob("*.safetensors")):
        raise ModelLoadError(
            f"'{path}' has no .safetensors weights (pickled .bin weights are refused); "
            "re-save the checkpoint with safetensors")
    return model_type


def _from_pretrained(name: str, revision: str | None, trust_remote_code: bool) -> tuple[Any, Any]:
    from safetensors import SafetensorError
    from transformers import AutoModelForImageTextToText, AutoProcessor

    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        processor = AutoProcessor.from_pretrained(name, revision=revision, local_files_only=offline,
                                                  trust_remote_code=trust_remote_code)
        model = AutoModelForImageTextToText.from_pretrained(
            name, revision=revision, local_files_only=offline, trust_remote_code=trust_remote_code,
            use_safetensors=True, dtype="float32")
    except ImportError as exc:  # a processor whose optional package is missing (SmolVLM's needs num2words)
        raise ModelLoadError(f"cannot load '{name}': {first_line(exc)}") from None
    except (SafetensorError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, SafetensorError) or "safetensors" in first.lower() or "header" in first.lower():
            raise ModelLoadError(
                f"weights in '{name}' are corrupt ({first}); rebuild or re-download the checkpoint") from None
        if Path(name).exists():
            raise ModelLoadError(f"cannot load '{name}': {first}") from None
        raise ModelLoadError(
            f"'{name}' is not in the local hub cache and the hub is offline; download it where there is "
            f"network (`hf download {name}`) or pass a local checkpoint directory") from None
    model.eval()
    return model, processor


def convert_checkpoint(reference: str, destination: Path, revision: str | None = None) -> Path:
    """`harness convert`: the Apple checkpoint `reference` (a directory or a hub id in the offline
    cache) written as a `fast_vlm` directory at `destination`."""
    from harness.models.apple import convert

    path = Path(reference).expanduser()
    if not path.exists() and HUB_ID.match(reference) and not reference.startswith((".", "/", "~")):
        snapshot = hub_snapshot(reference, revision)
        if snapshot is None:
            raise ModelLoadError(
                f"'{reference}' is not in the local hub cache and the hub is offline; download it where there is "
                f"network (`hf download {reference}`) or pass a local checkpoint directory")
        path = snapshot
    if check_checkpoint_dir(path) != APPLE:
        raise ModelLoadError(f"'{reference}' is already a 'fast_vlm' checkpoint; use it as it is")
    return convert(path, destination)
