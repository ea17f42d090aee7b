"""The facts of one exported artifact that an app needs, gathered from the export manifest, the
graph files, the processor files next to them and the build record — nothing is assumed: every
name, shape and dtype in a guide comes from here, and the tests check them against the manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.build.artifact import has_build_record, read_build_record
from harness.deploy._graph_io import graph_io
from harness.errors import RuntimeBackendError
from harness.exporting import EXPORT_MANIFEST, export_folder, read_export

#: The question the example prompt is rendered with.
EXAMPLE_QUESTION = "What is in the image?"
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def collect(artifact: Path, fmt: str) -> dict[str, Any]:
    """Everything a guide states about `artifact`'s `fmt` export (RuntimeBackendError when absent)."""
    folder, manifest = read_export(artifact, fmt)
    record = read_build_record(artifact) if has_build_record(artifact) else {}
    files = manifest.get("files", [])
    return {
        "variant": artifact.name, "artifact": str(artifact), "format": fmt, "folder": str(folder),
        "base": (record.get("base") or {}).get("model", "unknown"),
        "steps": [s.get("kind", "?") for s in record.get("steps", [])],
        "settings": manifest.get("settings", {}), "model": manifest.get("model", {}),
        "files": files, "total_bytes": sum(f["bytes"] for f in files),
        "graphs": (graphs := _graphs(folder, fmt, manifest)),
        "vision_input": _first(graphs, "vision", "inputs"),
        "cache_inputs": _cache_inputs(graphs),
        "preprocess": preprocessing(folder),
        "prompt": prompt(folder, manifest.get("model", {})),
        "tokenizer_files": [f["file"] for f in files if f["role"] == "tokenizer"],
        "export_steps": [s.get("kind", "?") for s in manifest.get("steps", [])],
        "mlx": mlx_llm(artifact) if fmt != "mlx" else None,
    }


def mlx_llm(artifact: Path) -> dict[str, Any] | None:
    """The variant's MLX LLM (`export-mlx`), when it has one: Apple's split puts the LLM in MLX and the
    vision encoder in Core ML, so an iOS guide names both."""
    from harness.exporting.mlx import LLM_DIR

    folder = export_folder(artifact, "mlx")
    if not (folder / EXPORT_MANIFEST).is_file():
        return None
    _, manifest = read_export(artifact, "mlx")
    config = json.loads((folder / LLM_DIR / "config.json").read_text())
    files = [f for f in manifest.get("files", []) if f["file"].startswith(f"{LLM_DIR}/")]
    return {"folder": str(folder / LLM_DIR), "settings": manifest.get("settings", {}),
            "quantization": config.get("quantization"), "hidden_size": config.get("hidden_size"),
            "layers": config.get("num_hidden_layers"), "files": files, "bytes": sum(f["bytes"] for f in files)}


def _graphs(folder: Path, fmt: str, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Graph name → its file, bytes (a package counts all its files) and signatures as read from the file."""
    out = {}
    for name, file in manifest.get("graphs", {}).items():
        size = sum(f["bytes"] for f in manifest.get("files", []) if f["file"] == file or
                   f["file"].startswith(f"{file}/"))
        out[name] = {"file": file, "bytes": size, "signatures": graph_io(fmt, folder / file)}
    return out


def _first(graphs: dict[str, dict[str, Any]], graph: str, side: str) -> dict[str, Any] | None:
    """The first input or output of a graph's first signature (None when the export lacks the graph)."""
    signatures = graphs.get(graph, {}).get("signatures", {})
    tensors = next(iter(signatures.values()), {}).get(side, []) if signatures else []
    return tensors[0] if tensors else None


def _cache_inputs(graphs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The decoder's KV-cache inputs (names with `kv_cache` or `past`), of its decode signature when it has one."""
    signatures = graphs.get("decoder", {}).get("signatures", {})
    chosen = signatures.get("decode") or next(iter(signatures.values()), {"inputs": []})
    return [t for t in chosen["inputs"] if "kv_cache" in t["name"] or "past" in t["name"]]


def preprocessing(folder: Path) -> dict[str, Any]:
    """The image preprocessing the export's processor config names (CLIP-style processors)."""
    path = folder / "processor_config.json"
    alt = folder / "preprocessor_config.json"
    source = path if path.is_file() else alt
    if not source.is_file():
        raise RuntimeBackendError(f"'{folder}' has no processor_config.json; rebuild the variant")
    data = json.loads(source.read_text())
    image = data.get("image_processor", data)
    crop = image.get("crop_size") or {}
    size = image.get("size") or {}
    return {"source": source.name, "processor": image.get("image_processor_type", "?"),
            "convert_rgb": bool(image.get("do_convert_rgb", True)),
            "resize": size.get("shortest_edge") or [size.get("height"), size.get("width")]
            if image.get("do_resize", True) else None,
            "resample": RESAMPLE.get(image.get("resample"), str(image.get("resample"))),
            "center_crop": [crop.get("height"), crop.get("width")] if image.get("do_center_crop") else None,
            "rescale": image.get("rescale_factor") if image.get("do_rescale", True) else None,
            "mean": image.get("image_mean") if image.get("do_normalize", True) else None,
            "std": image.get("image_std") if image.get("do_normalize", True) else None}


def prompt(folder: Path, model: dict[str, Any]) -> dict[str, Any]:
    """The prompt exactly as the harness measured it (its chat template over one image + question),
    tokenised by the export's own tokenizer: where the image token is and how far it expands."""
    from transformers import AutoProcessor

    from harness.models.fastvlm import chat_prompts

    processor = AutoProcessor.from_pretrained(str(folder))
    tokenizer = processor.tokenizer
    text = chat_prompts(processor, [EXAMPLE_QUESTION])[0]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    image_id = int(model["image_token_id"])
    eos = [int(i) for i in model.get("eos_token_ids", [])]
    return {"text": text, "question": EXAMPLE_QUESTION, "image_token": tokenizer.convert_ids_to_tokens(image_id),
            "image_token_id": image_id, "visual_tokens": int(model["visual_tokens"]),
            "ids": ids, "image_position": ids.index(image_id) if image_id in ids else None,
            "expanded_length": len(ids) - ids.count(image_id) + int(model["visual_tokens"]) * ids.count(image_id),
            "stop_tokens": [{"id": i, "text": tokenizer.convert_ids_to_tokens(i)} for i in eos],
            "chat_template_file": "chat_template.jinja" if (folder / "chat_template.jinja").is_file() else None}
