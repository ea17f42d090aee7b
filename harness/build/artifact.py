"""Saving and loading built variants in their real storage format.

A variant directory holds the processor files, `config.json` (the model after its steps, for
humans and for `from_pretrained` of float variants), `model.safetensors` and
`harness_variant.json` (the build record). Quantized weights (torchao tensor subclasses) are stored packed: their
inner tensors (`qdata` int8/uint8, `scale`, `zero_point`) go into the safetensors file under
`<param>::<inner>`, so the bytes on disk are the bytes that would ship. Loading rebuilds the
skeleton from the base config, *replays* the steps structurally, then loads the stored tensors.
No pickle anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import ModelLoadError, RuntimeUnavailable, StepError
from harness.models.fastvlm import is_plain_tensor

#: The build record: base model, base config, steps and their records, notes, packed tensors.
BUILD_RECORD = "harness_variant.json"
WEIGHTS = "model.safetensors"
FORMAT = "harness-variant/1"


def save_variant(loaded: Any, out_dir: Path, record: dict[str, Any]) -> None:
    """Write the variant; its build `record` must carry `base_config` and `steps` for replay."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Any] = {}
    packed: dict[str, dict[str, Any]] = {}
    for name, value in loaded.model.state_dict().items():
        if is_plain_tensor(value):
            tensors[name] = value.detach().clone().contiguous()
            continue
        if not hasattr(value, "__tensor_flatten__"):
            raise StepError(f"cannot store parameter '{name}' of type {type(value).__name__}")
        inner_names, meta = value.__tensor_flatten__()
        stored = []
        for inner in inner_names:
            part = getattr(value, inner)
            if part is not None:
                tensors[f"{name}::{inner}"] = part.detach().clone().contiguous()
                stored.append(inner)
        packed[name] = {"type": type(value).__name__, "inner": stored,
                        "dtypes": {i: str(getattr(value, i).dtype) for i in stored},
                        "meta": {k: repr(v) for k, v in meta.items()}}
    save_file(tensors, str(out_dir / WEIGHTS), metadata={"format": FORMAT})
    loaded.model.config.save_pretrained(out_dir)
    loaded.processor.save_pretrained(out_dir)
    (out_dir / BUILD_RECORD).write_text(json.dumps({**record, "format": FORMAT, "packed": packed},
                                               indent=2, default=str))


def save_size_only(config: Any, processor: Any, out_dir: Path, record: dict[str, Any]) -> None:
    """A variant that could not be built here: config, processor and the record with its size estimate
    (`record["size_only"]`); no weights. Loading it raises RuntimeUnavailable with the reason."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    (out_dir / BUILD_RECORD).write_text(json.dumps({**record, "format": FORMAT, "packed": {}}, indent=2, default=str))


def has_build_record(path: Path) -> bool:
    return (path / BUILD_RECORD).exists()


def read_build_record(path: Path) -> dict[str, Any]:
    file = path / BUILD_RECORD
    if not file.exists():
        raise ModelLoadError(f"'{path}' is not a built variant (no {BUILD_RECORD})")
    return json.loads(file.read_text())


def load_variant(path: Path) -> Any:
    """Rebuild a saved variant: skeleton from the base config → replay steps → load tensors."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import AutoProcessor

    from harness.models.families import family_of_model_type
    from harness.models.fastvlm import LoadedModel
    from harness.steps._base import StepContext, apply_step

    record = read_build_record(path)
    if record.get("size_only"):
        raise RuntimeUnavailable(record["size_only"]["reason"])
    family = family_of_model_type(record["base_config"].get("model_type"), f"variant '{path}'")
    model = family.model_class()(family.config_from_dict(record["base_config"])).eval()
    processor = AutoProcessor.from_pretrained(str(path))
    loaded = LoadedModel(model=model, processor=processor, source=record["base"]["source"],
                         random_weights=record["base"].get("random_weights", False),
                         meta={"path": str(path)})
    ctx = StepContext(replay=True, records=[dict(r) for r in record.get("step_records", [])])
    for raw in record["steps"]:
        apply_step(raw, loaded, ctx)
    try:
        tensors = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"weights of variant '{path}' are unreadable ({exc}); rebuild it") from None
    plain = {k: v for k, v in tensors.items() if "::" not in k}
    missing, unexpected = loaded.model.load_state_dict(plain, strict=False)
    packed = record.get("packed", {})
    if set(missing) != set(packed) or unexpected:
        raise ModelLoadError(f"variant '{path}' does not match its replayed structure "
                             f"(missing {sorted(set(missing) - set(packed))[:3]}, unexpected {unexpected[:3]})")
    with torch.no_grad():
        for name, info in packed.items():
            target = loaded.model.get_parameter(name) if name in dict(loaded.model.named_parameters()) \
                else loaded.model.get_buffer(name)
            for inner in info["inner"]:
                part = getattr(target, inner)
                source = tensors[f"{name}::{inner}"]
                if part.shape != source.shape:
                    raise ModelLoadError(f"variant '{path}': {name}::{inner} has shape {tuple(source.shape)}, "
                                         f"expected {tuple(part.shape)}")
                part.copy_(source)
    loaded.model.eval()
    return loaded
