"""LiteRT (TFLite) export of a FastVLM variant through litert-torch, as three static-shape graphs:

- `vision.tflite`, signature `encode`: pixel_values (1, 3, H, W) → features (1, N, hidden)
  (FastViTHD + projector).
- `embed.tflite`, signatures `prefill_embedder_<T>` (1, T) and `decode_embedder` (1, 1) token ids
  → embeddings (litert-torch's own external-embedder module).
- `decoder.tflite`, signatures `prefill_<T>` and `decode`: the Qwen2 decoder with an explicit KV
  cache, built by litert-torch's HF exporter pieces (`export_hf`: the external-embedder
  prefill/decode modules, `LiteRTLMCache` written with DYNAMIC_UPDATE_SLICE, its transposed
  attention). Inputs: `embeddings`, `input_pos` (int32), an additive float `mask`
  (1, 1, T, cache_length) and `kv_cache_{k,v}_<layer>`; outputs the updated cache, and
  `logits` (decode only: as in LiteRT-LM, prefill writes the cache and the last prompt token
  goes through `decode`). Batch 1, fixed T (`prefill_length`) and cache length: TFLite wants
  static shapes; longer prompts are prefilled in chunks of T.

Why these pieces: the decoder is the model's own transformers modules traced by torch.export
(litert-torch lowers the exported program), not a re-implementation. A deep copy of the text
model is exported, because the exporter switches the attention implementation in the config.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from harness.errors import RuntimeBackendError, StepError, first_line
from harness.exporting import check_exportable, converting, float_model, model_facts
from harness.models.fastvlm import named_module

#: Additive mask value for positions a query must not see (exported in the manifest).
MASK_VALUE = -1e4


def litert_facts(loaded: Any, prefill_length: int, cache_length: int) -> dict[str, Any]:
    return model_facts(loaded, prefill_length=prefill_length, cache_length=cache_length, mask_value=MASK_VALUE,
                       signatures={"vision": "encode", "embed_prefill": f"prefill_embedder_{prefill_length}",
                                   "embed_decode": "decode_embedder", "prefill": f"prefill_{prefill_length}",
                                   "decode": "decode"})


def export_model(loaded: Any, folder: Path, components: list[str], prefill_length: int,
                 cache_length: int) -> dict[str, Any]:
    """Convert `components` into `folder`; returns graphs, model facts and seconds per graph."""
    import torch

    check_exportable(loaded, "export-tflite", "litert-quant")
    model = float_model(loaded)
    facts = litert_facts(loaded, prefill_length, cache_length)
    build = {"vision": _vision, "embed": _embed, "decoder": _decoder}
    graphs: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for name in components:
        path = folder / f"{name}.tflite"
        start = time.perf_counter()
        with converting("export-tflite", "litert-torch", name), torch.no_grad():
            converter = build[name](model, facts)
            converter.convert(strict_export=False).export(str(path))
        seconds[name] = round(time.perf_counter() - start, 2)
        graphs[name] = path.name
    return {"graphs": graphs, "model": facts, "seconds": seconds}


def _vision(model: Any, facts: dict[str, Any]) -> Any:
    import litert_torch
    import torch

    class Encode(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: Any) -> dict[str, Any]:
            feats = self.inner.model.get_image_features(pixel_values=pixel_values).pooler_output
            return {"features": feats}

    height, width = facts["image_size"]
    sample = {"pixel_values": torch.zeros(1, 3, height, width)}
    return litert_torch.Converter().signature("encode", Encode(model).eval(), sample_kwargs=sample)


def _export_config(facts: dict[str, Any]) -> Any:
    from litert_torch.generative.export_hf.core import exportable_module_config

    return exportable_module_config.ExportableModuleConfig(
        model="fastvlm", prefill_lengths=[facts["prefill_length"]], cache_length=facts["cache_length"],
        externalize_embedder=True, cache_implementation="LiteRTLMCache", k_ts_idx=2, v_ts_idx=3,
        quantization_recipe=None)


def _embed(model: Any, facts: dict[str, Any]) -> Any:
    import litert_torch
    from litert_torch.generative.export_hf.core.external_emb import exportable_module as ext

    module = ext.LiteRTExportableModuleForEmbedder(model.get_input_embeddings()).eval()
    converter = litert_torch.Converter()
    for name, (inputs, _) in module.get_sample_inputs(None, _export_config(facts)).items():
        converter.signature(name, module, sample_kwargs=inputs)
    return converter


def _decoder(model: Any, facts: dict[str, Any]) -> Any:
    import litert_torch
    import torch
    from litert_torch.generative.export_hf.core import attention as _attention  # noqa: F401 - registers lrt attention
    from litert_torch.generative.export_hf.core import cache as _cache  # noqa: F401 - registers LiteRTLMCache
    from litert_torch.generative.export_hf.core.external_emb import exportable_module as ext
    from transformers import Qwen2ForCausalLM

    text_config = copy.deepcopy(model.config.text_config)
    if text_config.model_type != "qwen2":
        raise StepError(f"export-tflite: the decoder export handles Qwen2 text models, not '{text_config.model_type}'")
    with torch.device("meta"):
        lm = Qwen2ForCausalLM(text_config)
    lm.model = copy.deepcopy(named_module(model, "llm"))
    lm.lm_head = copy.deepcopy(named_module(model, "lm_head"))
    lm.config = text_config
    for module in lm.modules():  # the copied layers must read the copied config, not the variant's
        if hasattr(module, "config") and module is not lm:
            module.config = text_config
    lm.eval().set_attn_implementation("lrt_transposed_attention")
    export_config = _export_config(facts)
    converter = litert_torch.Converter()
    for cls in (ext.LiteRTExportableModuleForDecoderOnlyLMPrefillExternalEmbedder,
                ext.LiteRTExportableModuleForDecoderOnlyLMGenerateExternalEmbedder):
        module = cls(lm, export_config).eval()
        for name, (inputs, _) in module.get_sample_inputs(text_config).items():
            converter.signature(name, module, sample_kwargs=inputs)
    return converter


# --- reading graphs back ------------------------------------------------------------------
def open_interpreter(path: Path, threads: int, delegate: str = "xnnpack") -> Any:
    """An Interpreter over a .tflite file, or one clear error for a missing/corrupt file."""
    from ai_edge_litert import interpreter as lite

    if not path.is_file():
        raise RuntimeBackendError(f"tflite graph '{path}' is missing; rebuild the variant")
    resolver = (lite.OpResolverType.AUTO if delegate == "xnnpack"
                else lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    try:
        interp = lite.Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = first_line(exc)
        raise RuntimeBackendError(f"LiteRT cannot load '{path.name}' (corrupt or unsupported .tflite): "
                                  f"{first}") from None
    return interp


class Signature:
    """A signature runner taking and returning float arrays: int8/int16 inputs are quantized with
    their tensor's scale/zero point and integer outputs dequantized (full-integer graphs)."""

    def __init__(self, interp: Any, name: str) -> None:
        self.name = name
        self.runner = interp.get_signature_runner(name)
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()
        #: When a list, every call's (float-model) inputs are appended: calibration data.
        self.record: list[dict[str, Any]] | None = None

    def __call__(self, **feeds: Any) -> dict[str, Any]:
        import numpy as np

        args = {}
        for key, value in feeds.items():
            detail = self.inputs[key]
            dtype = detail["dtype"]
            scale, zero = detail["quantization"]
            if dtype in (np.int8, np.uint8, np.int16) and scale:
                info = np.iinfo(dtype)
                value = np.clip(np.round(value / scale) + zero, info.min, info.max)
            args[key] = np.asarray(value).astype(dtype)
        if self.record is not None:
            self.record.append({k: v.copy() for k, v in args.items()})
        out = self.runner(**args)
        result = {}
        for key, value in out.items():
            scale, zero = self.outputs[key]["quantization"]
            if value.dtype in (np.int8, np.uint8, np.int16) and scale:
                value = (value.astype(np.float32) - zero) * scale
            result[key] = value
        return result


def op_report(path: Path) -> dict[str, Any]:
    """Integer check of every subgraph of a .tflite file (ai-edge-quantizer's flatbuffer reader):
    op counts, the ops that read or write a float tensor, and each signature's I/O dtypes."""
    from collections import Counter

    from ai_edge_litert import interpreter as lite
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    names = {v: k for k, v in vars(qtyping.BuiltinOperator).items() if k.isupper()}
    model = fb.read_model(str(path))
    ops: Counter[str] = Counter()
    float_ops: Counter[str] = Counter()
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), str(code.builtinCode))
            ops[name] += 1
            indices = [*(op.inputs if op.inputs is not None else []), *(op.outputs if op.outputs is not None else [])]
            used = [fb.TENSOR_CODE_TO_TYPE.get(subgraph.tensors[i].type) for i in indices if i >= 0]
            if any(t in ("FLOAT32", "FLOAT16") for t in used):
                float_ops[name] += 1
    interp = lite.Interpreter(model_path=str(path),
                              experimental_op_resolver_type=lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    io = {}
    for sig in interp.get_signature_list():
        runner = interp.get_signature_runner(sig)
        io[sig] = {"inputs": sorted({v["dtype"].__name__ for v in runner.get_input_details().values()}),
                   "outputs": sorted({v["dtype"].__name__ for v in runner.get_output_details().values()})}
    return {"ops": dict(ops), "non_integer_ops": dict(float_ops), "io_dtypes": io}


class LiteRTBackend:
    """The generation loop's backend (`harness.exporting.loop`) over the vision, embed and decoder
    signatures: the `litert` runtime runs it, and `litert-quant` records calibration inputs with it.
    The ExecuTorch backend reuses the chunked-prefill / static-cache logic over its own methods
    (same signatures and facts), so `label` names the format in its errors."""

    label = "LiteRT"

    def __init__(self, interpreters: dict[str, Any], facts: dict[str, Any]) -> None:
        sig = facts["signatures"]
        self.facts = facts
        # every graph is optional: benchmarks/peers_0p5b.py opens a decoder or a vision graph alone
        self.vision = Signature(interpreters["vision"], sig["vision"]) if "vision" in interpreters else None
        if "embed" in interpreters:
            self.embed_prefill = Signature(interpreters["embed"], sig["embed_prefill"])
            self.embed_decode = Signature(interpreters["embed"], sig["embed_decode"])
        self.chunk = int(facts["prefill_length"])
        self.slots = int(facts["cache_length"])
        if "decoder" in interpreters:  # optional too: an encoder-only benchmark opens the vision graph alone
            self.prefill_sig = Signature(interpreters["decoder"], sig["prefill"])
            self.decode_sig = Signature(interpreters["decoder"], sig["decode"])
            self.kv_names = sorted(k for k in self.decode_sig.inputs if k.startswith("kv_cache"))

    # --- encoder and embeddings ---------------------------------------------------------
    def encode(self, pixel_values: Any) -> Any:
        import numpy as np

        rows = [self.vision(pixel_values=pixel_values[i:i + 1])["features"] for i in range(pixel_values.shape[0])]
        return np.concatenate(rows, axis=0).astype(np.float32)

    def embed(self, input_ids: Any) -> Any:
        import numpy as np

        rows = []
        for ids in np.asarray(input_ids, dtype=np.int32):
            if ids.shape[0] == 1:
                rows.append(self.embed_decode(token_ids=ids[None])["embeddings"][0])
                continue
            parts = []
            for start in range(0, ids.shape[0], self.chunk):
                piece = ids[start:start + self.chunk]
                padded = np.zeros((1, self.chunk), np.int32)
                padded[0, :len(piece)] = piece
                parts.append(self.embed_prefill(token_ids=padded)["embeddings"][0, :len(piece)])
            rows.append(np.concatenate(parts, axis=0))
        return np.stack(rows).astype(np.float32)

    # --- decoder ------------------------------------------------------------------------
    def _mask(self, positions: Any) -> Any:
        import numpy as np

        mask = np.full((1, 1, len(positions), self.slots), self.facts["mask_value"], np.float32)
        for row, pos in enumerate(positions):
            mask[0, 0, row, :int(pos) + 1] = 0.0
        return mask

    def _decode_one(self, embed: Any, pos: int, kv: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        import numpy as np

        if pos >= self.slots:
            raise RuntimeBackendError(f"{self.label} decoder cache is full: position {pos} needs more than the "
                                      f"{self.slots} slots exported; re-export with a larger cache_length")
        out = self.decode_sig(embeddings=embed[None, None].astype(np.float32),
                              input_pos=np.array([pos], np.int32), mask=self._mask([pos]), **kv)
        return out["logits"][0, -1], {k: out[k] for k in self.kv_names}

    def prefill(self, embeds: Any, mask: Any, positions: Any) -> tuple[Any, list[dict[str, Any]]]:
        import numpy as np

        logits, past = [], []
        for row in range(embeds.shape[0]):
            real = embeds[row][np.asarray(mask[row]) == 1]
            length = real.shape[0]
            chunks = -(-(length - 1) // self.chunk)
            if length == 0 or chunks * self.chunk > self.slots or length >= self.slots:
                raise RuntimeBackendError(f"a prompt of {length} tokens does not fit the {self.label} export (cache "
                                          f"{self.slots} slots, prefill chunks of {self.chunk}); re-export with a "
                                          "larger cache_length")
            kv = {k: np.zeros(self.decode_sig.inputs[k]["shape"], np.float32) for k in self.kv_names}
            for index in range(chunks):
                start = index * self.chunk
                piece = real[start:min(start + self.chunk, length - 1)]
                padded = np.zeros((1, self.chunk, real.shape[1]), np.float32)
                padded[0, :len(piece)] = piece
                pos = np.arange(start, start + self.chunk, dtype=np.int32)
                out = self.prefill_sig(embeddings=padded, input_pos=pos,
                                       mask=self._mask(np.minimum(pos, length - 2)), **kv)
                kv = {k: out[k] for k in self.kv_names}
            row_logits, kv = self._decode_one(real[length - 1], length - 1, kv)
            logits.append(row_logits)
            past.append(kv)
        return np.stack(logits).astype(np.float32), past

    def decode(self, embeds: Any, mask: Any, positions: Any, past: list[dict[str, Any]]) -> tuple[Any, list[Any]]:
        import numpy as np

        logits, new_past = [], []
        for row, kv in enumerate(past):
            row_logits, kv = self._decode_one(embeds[row, 0], int(positions[row, 0]), kv)
            logits.append(row_logits)
            new_past.append(kv)
        return np.stack(logits).astype(np.float32), new_past

    @staticmethod
    def past_nbytes(past: list[dict[str, Any]]) -> int:
        return int(sum(v.nbytes for kv in past for v in kv.values()))
