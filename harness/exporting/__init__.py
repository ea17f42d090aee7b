"""Exports of a built variant into other formats, and the manifest every export folder carries.

An export step writes into `StepContext.export_dir(fmt)` while the variant is built; the build's
atomic rename moves the folder to `<artifact>/exports/<fmt>/`. Each folder holds `export.json`:
every file with its role (`graph`, `external-data`, `tokenizer`, `config`, `weights`, `other`)
and bytes, the export settings, the graphs by name, and the steps that rewrote the export
(e.g. `ort-quant`). The size suite and the runtimes read it; nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

from harness.errors import RuntimeBackendError, StepError, first_line

EXPORTS = "exports"
EXPORT_MANIFEST = "export.json"
Graph = Literal["vision", "embed", "decoder"]  # the graphs an export may hold (step config fields)
GENERATION_GRAPHS: tuple[str, ...] = get_args(Graph)  # ...all of which a runtime needs to generate
GRAPH_SUFFIXES = (".onnx", ".tflite", ".mlmodel", ".mlpackage", ".pte")
TOKENIZER_HINTS = ("tokenizer", "vocab", "merges", "special_tokens", "chat_template", "processor",
                   "preprocessor")


def check_exportable(loaded: Any, step: str, quant_step: str) -> None:
    """Refuse what an exported graph cannot express, in one line (not a tracer failure): a custom
    KV cache, or torch-quantized tensors (compress the exported graphs with `quant_step` instead)."""
    from harness.models.fastvlm import is_plain_tensor

    if loaded.cache_factory is not None:
        raise StepError(f"{step} cannot express a custom KV cache (kv-cache step): the exported decoder keeps a "
                        "plain float cache; drop the kv-cache step from this variant")
    odd = [n for n, p in loaded.model.named_parameters() if not is_plain_tensor(p)]
    if odd:
        raise StepError(f"{step} cannot express torch-quantized tensors (e.g. '{odd[0]}'); export the float model "
                        f"and compress the exported graphs with a {quant_step} step instead")


@contextlib.contextmanager
def converting(step: str, tool: str, graph: str) -> Iterator[None]:
    """Around one graph's conversion: the converter's many untyped failures become one StepError line
    naming the step, the tool and the graph (a StepError raised inside passes through)."""
    try:
        yield
    except StepError:
        raise
    except Exception as exc:  # noqa: BLE001 - tracers, MIL and MLIR lowering raise many untyped errors
        raise StepError(f"{step}: {tool} cannot convert the {graph} graph: "
                        f"{type(exc).__name__}: {first_line(exc)}") from exc


def float_model(loaded: Any) -> Any:
    """The variant's model in fp32 and eval mode, for tracing: a copy when its dtype differs, so the
    variant's own weights (the parity reference) stay untouched."""
    import copy

    import torch

    model = loaded.model if loaded.dtype == torch.float32 else copy.deepcopy(loaded.model).float()
    return model.eval()


def model_facts(loaded: Any, **extra: Any) -> dict[str, Any]:
    """What every runtime of an export needs to drive the graphs (saved in `export.json`): sizes, cache
    layout, image token and EOS ids (picked as the torch adapter picks them), plus format-specific `extra`."""
    text = loaded.model.config.text_config
    heads = text.num_attention_heads
    return {"hidden_size": text.hidden_size, "num_layers": text.num_hidden_layers,
            "kv_heads": getattr(text, "num_key_value_heads", None) or heads,
            "head_dim": getattr(text, "head_dim", None) or text.hidden_size // heads,
            "vocab_size": text.vocab_size, "image_size": list(loaded.image_size),
            "image_token_id": int(loaded.model.config.image_token_id),
            "eos_token_ids": loaded.eos_token_ids(),
            "visual_tokens": loaded.visual_tokens, **extra}


def guess_role(relative: str) -> str:
    """A file's role from its name (export steps may name roles explicitly instead)."""
    name = Path(relative).name
    if name.endswith(GRAPH_SUFFIXES) or ".mlpackage/" in relative and name == "model.mlmodel":
        return "graph"
    if name.endswith((".data", ".onnx_data", ".onnx.data")) or ".onnx." in name:
        return "external-data"
    if ".mlpackage/" in relative and "weights" in relative:
        return "weights"
    if any(h in name for h in TOKENIZER_HINTS):
        return "tokenizer"
    if name.endswith((".json", ".txt", ".jinja", ".yaml")):
        return "config"
    return "other"


def export_folder(artifact: Path, fmt: str) -> Path:
    return artifact / EXPORTS / fmt


def formats_on_disk(artifact: Path) -> list[str]:
    """Formats the artifact holds: torch always, plus every export folder with a manifest."""
    root = artifact / EXPORTS
    found = sorted(p.name for p in root.iterdir() if (p / EXPORT_MANIFEST).is_file()) if root.is_dir() else []
    return ["torch", *found]


def list_files(folder: Path, roles: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every file under `folder` (the manifest excluded) with its role and bytes."""
    roles = roles or {}
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != EXPORT_MANIFEST):
        relative = path.relative_to(folder).as_posix()
        out.append({"file": relative, "role": roles.get(relative, guess_role(relative)), "bytes": path.stat().st_size})
    return out


def write_export_manifest(folder: Path, fmt: str, settings: dict[str, Any], graphs: dict[str, str],
                          roles: dict[str, str] | None = None, model: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write (or rewrite) `export.json`; `graphs` maps a component graph name to its file."""
    previous = read_manifest_file(folder) if (folder / EXPORT_MANIFEST).is_file() else {}
    manifest = {"format": fmt, "settings": {**previous.get("settings", {}), **settings},
                "graphs": {**previous.get("graphs", {}), **graphs},
                "model": {**previous.get("model", {}), **(model or {})},
                "steps": previous.get("steps", []), "files": []}
    manifest["files"] = list_files(folder, roles)
    (folder / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
    return manifest


def record_export_step(folder: Path, step: dict[str, Any], graphs: dict[str, str] | None = None) -> dict[str, Any]:
    """After a step rewrote an export in place: note the step, point at new graphs, relist files."""
    manifest = read_manifest_file(folder)
    manifest["steps"] = [*manifest.get("steps", []), step]
    manifest["graphs"] = {**manifest.get("graphs", {}), **(graphs or {})}
    roles = {f["file"]: f["role"] for f in manifest.get("files", [])}
    manifest["files"] = list_files(folder, roles)
    (folder / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
    return manifest


def read_manifest_file(folder: Path) -> dict[str, Any]:
    path = folder / EXPORT_MANIFEST
    if not path.is_file():
        raise RuntimeBackendError(f"'{folder}' holds no export ({EXPORT_MANIFEST} missing); rebuild the variant")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise RuntimeBackendError(f"'{path}' is corrupt; rebuild the variant") from None


def read_export(artifact: Path, fmt: str) -> tuple[Path, dict[str, Any]]:
    """The export folder of format `fmt` and its manifest, or one clear error."""
    folder = export_folder(artifact, fmt)
    if not folder.is_dir():
        raise RuntimeBackendError(f"variant '{artifact.name}' has no {fmt} export (formats: "
                                  f"{'+'.join(formats_on_disk(artifact))}); add an export step for {fmt}")
    return folder, read_manifest_file(folder)


def graphs_to_rewrite(step: str, fmt: str, manifest: dict[str, Any], wanted: list[str] | None) -> list[str]:
    """The graphs a step that rewrites an export in place works on: `wanted`, or every graph of
    the export when None; one StepError naming what the export lacks and what it has."""
    graphs = manifest.get("graphs", {})
    chosen = list(graphs) if wanted is None else wanted
    absent = [g for g in chosen if g not in graphs]
    if absent or not chosen:
        raise StepError(f"{step}: the {fmt} export has no {', '.join(absent) or 'selected'} graph "
                        f"(it has {', '.join(graphs) or 'none'})")
    return chosen


def generation_graphs(artifact: Path, fmt: str, step: str) -> tuple[Path, dict[str, Any], dict[str, str]]:
    """The export folder, manifest and graph files a generating runtime needs (vision, embed,
    decoder), or one clear error naming the missing graphs and the step that makes them."""
    folder, manifest = read_export(artifact, fmt)
    graphs = manifest.get("graphs", {})
    missing = [g for g in GENERATION_GRAPHS if g not in graphs]
    if missing:
        raise RuntimeBackendError(f"{fmt} export of '{artifact.name}' lacks the {', '.join(missing)} graph(s); "
                                  f"generation needs vision, embed and decoder ({step} components)")
    return folder, manifest, graphs


def save_assets(loaded: Any, folder: Path) -> dict[str, str]:
    """Processor files (tokenizer, chat template, image preprocessing) next to the graphs, so an
    export folder is self-contained; returns their roles."""
    before = {p.name for p in folder.iterdir()}
    loaded.processor.save_pretrained(folder)
    return {p.name: "tokenizer" for p in folder.iterdir() if p.is_file() and p.name not in before}
