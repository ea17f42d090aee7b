"""Size suite: bytes on disk of every file of the artifact, in its real storage format,
grouped into weights, tokenizer/processor assets and configuration.

For a safetensors variant it also reports the LLM's share (`llm_weight_bytes`: tensors under
`model.language_model.*` and `lm_head.*`, as stored), how many parameters those bytes stand for
(`llm_params`, counting a packed layer by its logical out x in; `llm_ratio_to_fp16` = bytes / 2
bytes per parameter), the same ratio over `weight-quant`'s packed layers alone (codes, scales,
zero points, biases), and `storage_format`: one line
saying what the weights really are, derived from the variant's build record (quantized layers, their
packing, group, scales, zero points; the dtype of the rest). Exports (`exports/<fmt>/`, see
harness/exporting) are measured per format from disk, with the roles their `export.json` names."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from harness.build.artifact import WEIGHTS, has_build_record, read_build_record
from harness.models.fastvlm import COMPONENT_PATHS
from harness.registries import SUITE_KINDS
from harness.results.pareto import Objective
from harness.spec.suite_files import SuiteConfig
from harness.suites._context import SuiteContext
from harness.suites._kind import HistoryRow, SuiteKind, TargetRule, TargetValue

WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".data", ".onnx_data", ".tflite", ".bin", ".mlmodel", ".weight")
ASSET_HINTS = ("tokenizer", "processor", "chat_template", "vocab", "merges", "special_tokens")


def categorize(path: Path) -> str:
    name = path.name
    if name.endswith(WEIGHT_SUFFIXES) or "weights" in path.parts:
        return "weights"
    if any(h in name for h in ASSET_HINTS):
        return "tokenizer_assets"
    return "config"


LLM_PREFIXES = tuple(f"{path}." for path in COMPONENT_PATHS["llm"])
ITEMSIZE = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
            "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
FLOAT_NAMES = {"F64": "fp64", "F32": "fp32", "F16": "fp16", "BF16": "bf16"}
#: Tensors of a `weight-quant` packed layer that are storage, not parameters of the original model.
PACKED_PARTS = ("qweight", "scales", "qzeros", "input_scale")


def _tensor_table(path: Path) -> dict[str, tuple[str, int]]:
    """Key → (safetensors dtype, element count), read from the header only."""
    import math

    from safetensors import safe_open

    table = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open is not iterable
            piece = f.get_slice(key)
            table[key] = (piece.get_dtype(), math.prod(piece.get_shape()))
    return table


def _packed_layers(build_record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Layers stored packed by `weight-quant`, with the settings of the step that packed them.

    Searched through nested records too: `mixed-precision` keeps one `weight-quant` record per width.
    """
    layers: dict[str, dict[str, Any]] = {}

    def visit(record: Any) -> None:
        if not isinstance(record, dict):
            return
        if isinstance(record.get("layers"), dict) and "bits" in record:
            for name, info in record["layers"].items():
                layers[name] = {**info, **{k: record.get(k) for k in ("bits", "group_size", "symmetric", "algorithm")}}
        for value in record.values():
            visit(value)

    for record in build_record.get("step_records", []):
        visit(record)
    return layers


def weight_summary(artifact: Path, build_record: dict[str, Any]) -> dict[str, Any]:
    """`llm_weight_bytes`, `llm_params` and `storage_format` of a safetensors variant."""
    table = _tensor_table(artifact / WEIGHTS)
    layers = _packed_layers(build_record)
    torchao = build_record.get("packed", {})
    llm_bytes = llm_params = packed_bytes = packed_params = 0
    rest: dict[str, int] = {}
    other_int8 = 0  # int8 tensors outside packed layers / torchao: static-int8 (PT2E) graph weights
    for key, (dtype, count) in table.items():
        nbytes = count * ITEMSIZE.get(dtype, 4)
        base, _, inner = key.partition("::")
        owner, _, leaf = base.rpartition(".")
        in_packed_layer = owner in layers and leaf in (*PACKED_PARTS, "bias")
        if inner:
            params = count if inner == "qdata" else 0
        elif in_packed_layer:
            out_features, in_features = layers[owner]["shape"]
            params = out_features * in_features if leaf == "qweight" else count if leaf == "bias" else 0
        else:
            params = count
            if dtype in FLOAT_NAMES:
                rest[FLOAT_NAMES[dtype]] = rest.get(FLOAT_NAMES[dtype], 0) + nbytes
            elif dtype in ("I8", "U8"):
                other_int8 += 1
        if in_packed_layer:
            packed_bytes += nbytes
            packed_params += params
        if base.startswith(LLM_PREFIXES):
            llm_bytes += nbytes
            llm_params += params
    parts = ["safetensors"]
    for setting, count in _group_settings(layers).items():
        bits, group, symmetric, algorithm = setting
        packing = "2 per byte" if bits == 4 else "1 per byte"
        grouping = "per-channel" if group == -1 else f"group {group}"
        zeros = "symmetric, no zero points" if symmetric else f"asymmetric, INT{bits} zero points"
        parts.append(f"INT{bits} packed ({packing}, uint8; {algorithm.upper()} via INC), {grouping}, fp16 scales, "
                     f"{zeros}; {count} layers")
    for type_name, count in _torchao_types(torchao).items():
        parts.append(f"{type_name}; {count} tensors")
    if other_int8:
        parts.append(f"INT8 graph weights (static-int8, PT2E) with per-channel scales; {other_int8} tensors")
    if rest:
        parts.append("rest " + "+".join(sorted(rest, key=lambda d: -rest[d])))
    return {"llm_weight_bytes": llm_bytes, "llm_params": llm_params, "llm_fp16_bytes": 2 * llm_params,
            "llm_ratio_to_fp16": llm_bytes / (2 * llm_params) if llm_params else None,
            "packed_layer_bytes": packed_bytes,
            "packed_ratio_to_fp16": packed_bytes / (2 * packed_params) if packed_params else None,
            "storage_format": "; ".join(parts)}


def _group_settings(layers: dict[str, dict[str, Any]]) -> dict[tuple, int]:
    settings: dict[tuple, int] = {}
    for info in layers.values():
        key = (info["bits"], info["group_size"], info["symmetric"], info["algorithm"] or "?")
        settings[key] = settings.get(key, 0) + 1
    return settings


def _torchao_types(packed: dict[str, Any]) -> dict[str, int]:
    types: dict[str, int] = {}
    for info in packed.values():
        inner = ", ".join(f"{name} {info.get('dtypes', {}).get(name, '?').removeprefix('torch.')}"
                          for name in info.get("inner", []))
        label = f"torchao {info.get('type', '?')} ({inner})"
        types[label] = types.get(label, 0) + 1
    return types


def estimated_size(size_only: dict[str, Any], files_bytes: int) -> dict[str, Any]:
    """A size-only variant (too large to build here, see harness/models/sizing.py): the files on disk
    (config, tokenizer) plus the fp32 weights it would store, from the meta-device estimate, and the
    estimate's parameter counts and fp16/INT8/INT4 bytes."""
    estimate = size_only["estimate"]
    weights = estimate["bytes"]["fp32"]
    llm_params = estimate["params"]["llm"]
    total = files_bytes + weights
    return {"estimated": True, "estimate": estimate, "total_bytes": total, "total_mb": total / 1e6,
            "weights_mb": weights / 1e6, "llm_params": llm_params, "llm_weight_bytes": 4 * llm_params,
            "llm_fp16_bytes": 2 * llm_params, "llm_ratio_to_fp16": 2.0,
            "storage_format": f"not built here ({size_only['reason']}); estimated fp32 safetensors"}


class SizeConfig(SuiteConfig):
    kind: Literal["size"] = "size"


#: Size fields kept in the summary when the result has them.
SUMMARY_EXTRAS = ("storage_format", "llm_weight_bytes", "llm_ratio_to_fp16", "packed_ratio_to_fp16", "estimated",
                  "estimate")
ROLE_CATEGORY = {"graph": "weights", "external-data": "weights", "weights": "weights", "tokenizer": "tokenizer_assets"}


def _export_rows(artifact: Path) -> dict[str, list[dict[str, Any]]]:
    """Per export format, its files (bytes from disk) with the roles its `export.json` names."""
    from harness.exporting import EXPORT_MANIFEST, EXPORTS, guess_role, read_manifest_file

    out: dict[str, list[dict[str, Any]]] = {}
    root = artifact / EXPORTS
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        roles = {f["file"]: f["role"] for f in read_manifest_file(folder).get("files", [])}
        rows = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            relative = path.relative_to(folder).as_posix()
            role = "config" if path.name == EXPORT_MANIFEST else roles.get(relative, guess_role(relative))
            rows.append({"file": str(path.relative_to(artifact)), "bytes": path.stat().st_size, "role": role,
                         "category": ROLE_CATEGORY.get(role, "config"), "format": folder.name})
        out[folder.name] = rows
    return out


def _export_format_line(artifact: Path, fmt: str) -> str:
    from harness.exporting import export_folder, read_manifest_file

    manifest = read_manifest_file(export_folder(artifact, fmt))
    settings = manifest.get("settings", {})
    parts = [f"{fmt} ({settings.get('exporter', 'export')}, opset {settings['opset']}, {settings.get('dtype', '?')})"
             if "opset" in settings else f"{fmt} ({settings.get('exporter', 'export')})"]
    for step in manifest.get("steps", []):
        detail = ", ".join(f"{k} {'+'.join(v) if isinstance(v, list) else v}" for k, v in step.items()
                           if k in ("mode", "block_size", "format", "graphs"))
        parts.append(f"{step.get('kind')}: {detail}")
    return "; ".join(parts)


@SUITE_KINDS.register("size", "bytes on disk per file of the saved artifact: weights, assets, config")
class Size(SuiteKind):
    """On a runtime, `total_mb` counts the files of the format that runtime runs (torch: the
    variant's own files; onnx: `exports/onnx/`), since those are what would ship; `by_format`
    lists every format of the artifact with bytes per role (graph, external data, tokenizer...)."""

    Config = SizeConfig
    #: Reads files only: measured even where the runtime cannot load a session.
    needs_session: ClassVar[bool] = False
    section: ClassVar[str | None] = None
    headline: ClassVar[str | None] = "size"
    targets: ClassVar[dict[str, TargetRule]] = {"max_size_mb": TargetRule(True, "MB", "no size suite")}
    objectives: ClassVar[tuple[Objective, ...]] = (
        Objective("size_mb", False, min_relative_effect=0.01, rank=2, label="size (MB)", target="max_size_mb"),)
    report_template: ClassVar[str] = "suites/size.html.j2"

    def run(self, config: SizeConfig, ctx: SuiteContext) -> dict[str, Any]:
        from harness.exporting import EXPORTS

        exports = _export_rows(ctx.artifact)
        files = sorted(p for p in ctx.artifact.rglob("*") if p.is_file() and EXPORTS not in
                       p.relative_to(ctx.artifact).parts[:1])
        torch_rows = [{"file": str(p.relative_to(ctx.artifact)), "bytes": p.stat().st_size,
                       "category": categorize(p), "format": "torch"} for p in files]
        formats = {"torch": torch_rows, **exports}
        accepts = getattr(ctx.runtime, "accepts", ("torch",))
        fmt = next((f for f in accepts if f in formats), "torch")
        listing = formats[fmt]
        totals: dict[str, int] = {}
        for row in listing:
            totals[row["category"]] = totals.get(row["category"], 0) + row["bytes"]
        total = sum(totals.values())
        by_format = {}
        for name, rows in formats.items():
            roles: dict[str, int] = {}
            for row in rows:
                key = row.get("role", row["category"])
                roles[key] = roles.get(key, 0) + row["bytes"]
            by_format[name] = {"total_bytes": sum(r["bytes"] for r in rows), "by_role_bytes": roles}
        result = {"format": fmt, "total_bytes": total, "total_mb": total / 1e6,
                  "weights_mb": totals.get("weights", 0) / 1e6, "by_category_bytes": totals,
                  "files": listing, "by_format": by_format}
        record = read_build_record(ctx.artifact) if fmt == "torch" and has_build_record(ctx.artifact) else {}
        if record.get("size_only"):
            result.update(estimated_size(record["size_only"], total))
        elif record and (ctx.artifact / WEIGHTS).is_file():
            result.update(weight_summary(ctx.artifact, record))
        elif fmt != "torch":
            result["storage_format"] = _export_format_line(ctx.artifact, fmt)
        return result

    def summarize(self, data: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
        return {"total_mb": data["total_mb"], "weights_mb": data["weights_mb"], "files": data.get("files", []),
                **{k: data[k] for k in SUMMARY_EXTRAS if k in data}}

    def target_value(self, summary: dict[str, Any], target: str) -> TargetValue:
        size = summary.get("size")
        return TargetValue(size["total_mb"]) if size else TargetValue(None, why=self.targets[target].missing)

    def objective_values(self, summary: dict[str, Any]) -> dict[str, tuple[float, list[float] | None]]:
        return {"size_mb": (summary["size"]["total_mb"], None)} if summary.get("size") else {}

    def headline_rows(self, entry: dict[str, Any]) -> list[HistoryRow]:
        return [("size_mb", entry.get("total_mb"), None)]

    def compare(self, name: str, old: dict[str, Any], new: dict[str, Any], variant: str, runtime: str,
                policy: dict[str, Any]) -> list[Any]:
        """Bytes on disk are exact: the ratio alone decides."""
        from harness.results.compare import IMPROVEMENT, REGRESSION, SAME, Change

        ratio = new["total_mb"] / old["total_mb"] if old["total_mb"] else float("inf")
        verdict = REGRESSION if ratio > policy["size_ratio"] else IMPROVEMENT if ratio < 1 / policy["size_ratio"] \
            else SAME
        return [Change(variant, runtime, "size MB", verdict, old["total_mb"], new["total_mb"], f"x{ratio:.4f}", None,
                       "bytes on disk (exact)")]
