"""The arms of benchmarks/peers_0p5b.py: how each format is built from the same (random) weights
and run. Harness formats go through the harness's steps and backends (the generation loop's
prefill/decode protocol); peers are driven by their own APIs: llama.cpp through llama-cpp-python
on a GGUF the `gguf` package writes, onnxruntime-genai through its model builder and Generator.

Every arm's `PREPARE[family](model, options, folder, context, threads)` builds what it needs into
`folder` and returns a maker: a call that loads and returns a runner with `prefill(ids) -> logits`
and `decode(token) -> logits` (numpy, the last position's).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: arm -> (family, options, nominal bits per matmul weight: weight bits + per-block scale/zero bits)
LLM_ARMS: dict[str, tuple[str, dict[str, Any], float]] = {
    "torch-fp32": ("torch", {"dtype": "float32"}, 32),
    "torch-bf16": ("torch", {"dtype": "bfloat16"}, 16),
    "ort-fp32": ("ort", {"mode": None}, 32),
    "ort-int8": ("ort", {"mode": "dynamic-int8"}, 8),
    "ort-int4": ("ort", {"mode": "int4-weight-only", "block_size": 32, "accuracy_level": 4}, 4 + 32 / 32),
    # the decoder exported by torch.export and fused for ORT (export-onnx `decoder_graph: fused`)
    "ort-int4-fused": ("ort", {"mode": "int4-weight-only", "block_size": 32, "accuracy_level": 4,
                               "decoder_graph": "fused"}, 4 + 32 / 32),
    "ort-int8-fused": ("ort", {"mode": "dynamic-int8", "decoder_graph": "fused"}, 8),
    "ort-int4-acc0": ("ort", {"mode": "int4-weight-only", "block_size": 32, "accuracy_level": 0}, 4 + 32 / 32),
    # the harness's ORT arms as they were before this benchmark's fixes: transformers' eager attention (repeat_kv
    # copies the KV cache to every query head) and, for INT4, MatMulNBits at accuracy_level 0
    "ort-int8-old": ("ort", {"mode": "dynamic-int8", "attention": "eager"}, 8),
    "ort-int4-old": ("ort", {"mode": "int4-weight-only", "block_size": 32, "accuracy_level": 0, "attention": "eager"},
                     4 + 32 / 32),
    "litert-int8": ("litert", {"mode": "dynamic-int8"}, 8),
    "litert-int4": ("litert", {"mode": "weight-only-int4"}, 4),
    "mlx-float": ("mlx", {"dtype": "float32"}, 32),
    "mlx-int4": ("mlx", {"dtype": "float32", "bits": 4, "group_size": 64}, 4 + 64 / 64),
    "executorch-8da4w": ("executorch", {"quantize": "8da4w"}, 4 + 16 / 32),
    "llamacpp-f16": ("llamacpp", {"type": "F16"}, 16),
    "llamacpp-q8_0": ("llamacpp", {"type": "Q8_0"}, 8 + 16 / 32),
    "llamacpp-q4_0": ("llamacpp", {"type": "Q4_0"}, 4 + 16 / 32),
    "ortgenai-int4": ("ortgenai", {"precision": "int4"}, 4 + 32 / 32),  # MatMulNBits, fp32 scales
}


def first_error(exc: BaseException) -> str:
    """One line for a skipped arm: the exception's type and first line."""
    from harness.errors import first_line

    return f"{type(exc).__name__}: {first_line(exc)}"[:300]


# --- the loop's backends (harness formats) -------------------------------------------------
class LoopRunner:
    """A backend of `harness.exporting.loop` fed token ids: embeds from the model's table, a full
    mask and positions, as the loop gives them for an unpadded prompt."""

    def __init__(self, backend: Any, table: Any) -> None:
        self.backend, self.table = backend, table

    def prefill(self, ids: list[int]) -> Any:
        n = len(ids)
        self.mask = np.ones((1, n), np.int64)
        logits, self.past = self.backend.prefill(self.table[ids][None], self.mask, np.arange(n)[None])
        return logits[0]

    def decode(self, token: int) -> Any:
        position = self.mask.shape[1]
        self.mask = np.ones((1, position + 1), np.int64)
        logits, self.past = self.backend.decode(self.table[[token]][None], self.mask, np.array([[position]]),
                                                self.past)
        return logits[0]


def embed_table(model: Any) -> Any:
    return model.embed_tokens.weight.detach().float().numpy()


class TorchRunner:
    """torch eager: the model's own decoder and head with a DynamicCache (as benchmarks/tokens_kv_0p5b.py)."""

    def __init__(self, llm: Any, head: Any) -> None:
        self.llm, self.head = llm, head

    def _step(self, ids: list[int], cache: Any) -> Any:
        with torch.inference_mode():
            embeds = self.llm.embed_tokens(torch.tensor([ids]))
            out = self.llm(inputs_embeds=embeds, cache=cache, use_cache=True,
                           position_ids=torch.arange(self.position, self.position + len(ids))[None])
            self.cache, self.position = out.cache, self.position + len(ids)
            return self.head(out.last_hidden_state[:, -1])[0].float().numpy()

    def prefill(self, ids: list[int]) -> Any:
        from transformers import DynamicCache

        self.position = 0
        return self._step(ids, DynamicCache(config=self.llm.config))

    def decode(self, token: int) -> Any:
        return self._step([token], self.cache)


def prepare_torch(model: Any, options: dict[str, Any], folder: Path, context: int, threads: int) -> Callable:
    import copy

    dtype = getattr(torch, options["dtype"])
    llm, head = (model.llm, model.lm_head) if dtype == torch.float32 else \
        (copy.deepcopy(model.llm).to(dtype), copy.deepcopy(model.lm_head).to(dtype))
    return lambda: TorchRunner(llm, head)


def _step_into(model: Any, steps: list[dict[str, Any]], folder: Path, start_from: Path | None = None) -> Path:
    """Apply export/quantize steps with exports staged in `folder/exports` (copied from `start_from`)."""
    from harness.steps._base import StepContext, apply_step

    shutil.rmtree(folder / "exports", ignore_errors=True)  # a --work folder reused: never quantize a quantized copy
    if start_from is not None:
        shutil.copytree(start_from / "exports", folder / "exports")
    ctx = StepContext(staging=folder / "exports")
    for raw in steps:
        apply_step(raw, model, ctx)
    return folder / "exports"


def _shared_export(model: Any, name: str, step: dict[str, Any], folder: Path) -> Path:
    """The float export every quantized arm of a format starts from, built once beside the arms."""
    base = folder.parent / f"_{name}-float"
    if not (base / "exports").exists():
        _step_into(model, [step], base)
    return base


@contextlib.contextmanager
def _export_attention(attention: str | None) -> Iterator[None]:
    """The ONNX exporter with transformers' `attention` implementation instead of the harness's grouped one
    (None: unchanged): how the "before" arms are exported."""
    from harness.exporting import onnx as onnx_export

    registered = onnx_export.register_grouped_attention
    if attention is not None:
        onnx_export.register_grouped_attention = lambda: attention
    try:
        yield
    finally:
        onnx_export.register_grouped_attention = registered


def build_ort_decoder(model: Any, options: dict[str, Any], folder: Path) -> tuple[Path, dict[str, Any]]:
    """The arm's decoder graph (the float export, quantized by `ort-quant` per `options`) and its manifest."""
    from harness.exporting import read_manifest_file

    options = dict(options)
    attention, graph = options.pop("attention", None), options.pop("decoder_graph", "traced")
    name = "-".join(["ort", *([attention] if attention else []), *([graph] if graph != "traced" else [])])
    with _export_attention(attention):
        base = _shared_export(model, name, {"kind": "export-onnx", "components": ["decoder"], "decoder_graph": graph},
                              folder)
    exports = base / "exports" if options["mode"] is None else _step_into(
        model, [{"kind": "ort-quant", "targets": ["llm"], **options}], folder, base)
    manifest = read_manifest_file(exports / "onnx")
    return exports / "onnx" / manifest["graphs"]["decoder"], manifest


def prepare_ort(model: Any, options: dict[str, Any], folder: Path, context: int, threads: int) -> Callable:
    from harness.runtimes.onnxruntime import OnnxRuntime, OrtBackend

    path, manifest = build_ort_decoder(model, options, folder)
    table = embed_table(model)

    def make() -> LoopRunner:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), sess_options=OnnxRuntime()._options(),
                                       providers=["CPUExecutionProvider"])
        return LoopRunner(OrtBackend({"vision": None, "embed": None, "decoder": session}, manifest["model"]), table)

    return make


def static_cache(context: int) -> dict[str, int]:
    """The static-cache export settings for `context` tokens: prefill chunks of up to 64 and a cache holding
    whole chunks (the prompt is prefilled chunk by chunk, so its last chunk's padding needs slots too)."""
    chunk = min(64, context // 2)
    return {"prefill_length": chunk, "cache_length": -(-context // chunk) * chunk}


def prepare_litert(model: Any, options: dict[str, Any], folder: Path, context: int, threads: int) -> Callable:
    from harness.exporting import read_manifest_file
    from harness.exporting.litert import LiteRTBackend, open_interpreter

    export = {"kind": "export-tflite", "components": ["decoder"], **static_cache(context)}
    base = _shared_export(model, f"litert-{export['cache_length']}", export, folder)
    exports = _step_into(model, [{"kind": "litert-quant", **options}], folder, base)
    manifest = read_manifest_file(exports / "tflite")
    path, table = exports / "tflite" / manifest["graphs"]["decoder"], embed_table(model)
    return lambda: LoopRunner(LiteRTBackend({"decoder": open_interpreter(path, threads)}, manifest["model"]), table)


def prepare_executorch(model: Any, options: dict[str, Any], folder: Path, context: int, threads: int) -> Callable:
    from harness.exporting import read_manifest_file
    from harness.exporting.executorch import ExecuTorchBackend, open_program
    from harness.runtimes.executorch import _set_threads

    export = {"kind": "export-executorch", "components": ["decoder"], **static_cache(context), **options}
    exports = _step_into(model, [export], folder)
    manifest = read_manifest_file(exports / "pte")
    path, table = exports / "pte" / manifest["graphs"]["decoder"], embed_table(model)

    def make() -> LoopRunner:
        _set_threads()
        return LoopRunner(ExecuTorchBackend({"decoder": open_program(path)}, manifest["model"]), table)

    return make


def prepare_mlx(model: Any, options: dict[str, Any], folder: Path, context: int, threads: int) -> Callable:
    from harness.exporting import read_manifest_file
    from harness.runtimes.mlx import MlxBackend

    exports = _step_into(model, [{"kind": "export-mlx", **options}], folder)
    manifest = read_manifest_file(exports / "mlx")
    path, table = exports / "mlx" / manifest["graphs"].get("llm", "llm"), embed_table(model)

    def make() -> LoopRunner:
        from mlx_lm.utils import load_model

        return LoopRunner(MlxBackend(load_model(path)[0], encoder=None), table)

    return make


# --- peers ---------------------------------------------------------------------------------
def qwen2_tensors(model: Any) -> dict[str, Any]:
    """The LLM's weights under llama.cpp's Qwen2 GGUF names (float32 numpy, torch's [out, in] layout)."""
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    out = {"token_embd.weight": model.embed_tokens.weight, "output_norm.weight": model.llm.norm.weight,
           "output.weight": model.lm_head.weight}
    for index, layer in enumerate(model.llm.layers):
        for key, tensor in layer.state_dict().items():
            module, kind = key.rsplit(".", 1)
            out[f"blk.{index}.{names[module]}.{kind}"] = tensor
    return {k: v.detach().float().numpy() for k, v in out.items()}


def write_gguf(model: Any, path: Path, qtype: str, context: int) -> None:
    """A Qwen2 GGUF of the model's LLM: 2-D weights in `qtype` (F16/Q8_0/Q4_0), norms and biases F32,
    and a minimal SentencePiece-style vocabulary (ids are fed directly; its text does not matter)."""
    import gguf

    config = model.model.config.text_config
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_context_length(context)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", None)
                                    or config.rope_parameters["rope_theta"]))
    writer.add_file_type({"F16": 1, "Q8_0": 7, "Q4_0": 2}[qtype])
    _add_vocab(writer, config.vocab_size)
    kind = gguf.GGMLQuantizationType[qtype]
    for name, data in qwen2_tensors(model).items():
        if data.ndim == 2 and qtype == "F16":
            writer.add_tensor(name, data.astype(np.float16))
        elif data.ndim == 2:
            writer.add_tensor(name, gguf.quants.quantize(data, kind), raw_dtype=kind)
        else:
            writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_vocab(writer: Any, size: int) -> None:
    import gguf

    byte_tokens = 256 if size > 512 else 0  # the byte-fallback pieces, where the vocabulary has room
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(byte_tokens))]
    tokens += [f"t{i}" for i in range(size - len(tokens))]
    types = [gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.BYTE] * byte_tokens
    types += [gguf.TokenType.NORMAL] * (size - len(types))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * size)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)


class LlamaRunner:
    """llama.cpp through llama-cpp-python: `eval` of the prompt (one batch), then one token per call.
    `extra_bufts=False` loads without llama.cpp's extra CPU buffer types (AMX / repacked weights)."""

    def __init__(self, path: Path, context: int, threads: int, extra_bufts: bool = True) -> None:
        import llama_cpp.llama as module
        from llama_cpp import Llama

        defaults = module.llama_cpp.llama_model_default_params

        def params() -> Any:
            made = defaults()
            made.use_extra_bufts = extra_bufts
            return made

        module.llama_cpp.llama_model_default_params = params
        try:
            self.llm = Llama(model_path=str(path), n_ctx=context, n_batch=context, n_threads=threads,
                             n_threads_batch=threads, verbose=False)
        finally:
            module.llama_cpp.llama_model_default_params = defaults

    def _logits(self) -> Any:
        """The last token's logits (llama-cpp-python keeps none itself unless logits_all)."""
        return np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),)).copy()

    def prefill(self, ids: list[int]) -> Any:
        self.llm.reset()
        self.llm.eval(ids)
        return self._logits()

    def decode(self, token: int) -> Any:
        self.llm.eval([token])
        return self._logits()


#: a child process that loads a GGUF and runs 3 prompt tokens + 1 decode step: llama.cpp can crash
#: (SIGSEGV) on shapes a CPU kernel does not handle, which must not end the benchmark.
PROBE = ("import sys; sys.path.insert(0, sys.argv[3]); from peers_formats import LlamaRunner; "
         "r = LlamaRunner(sys.argv[1], 16, 1, sys.argv[2] == '1'); r.prefill([1, 2, 3]); r.decode(4)")


def prepare_llamacpp(model: Any, options: dict[str, Any], folder: Path, context: int, threads: int) -> Callable:
    """GGUF written by `gguf`; llama.cpp's default (extra buffer types: AMX, repack) unless it crashes
    in a probe process, then without them, recorded in `options["extra_bufts"]`."""
    import llama_cpp  # noqa: F401 - skip before writing a GGUF nobody can run

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"model-{options['type']}.gguf"
    write_gguf(model, path, options["type"], context)
    exits = []
    for extra in (True, False):
        probe = subprocess.run([sys.executable, "-c", PROBE, str(path), "1" if extra else "0",
                                str(Path(__file__).parent)], capture_output=True, text=True)
        if probe.returncode == 0:
            options["extra_bufts"] = extra
            if not extra:  # a negative exit is the signal: -11 = SIGSEGV
                options["why_no_extra_bufts"] = f"the probe with them (AMX/repack) exited {exits[0]}"
            return lambda: LlamaRunner(path, context, threads, extra)
        exits.append(probe.returncode)
    raise RuntimeError(f"llama.cpp cannot run this GGUF (probe exits {exits} with and without extra bufts)")


def save_hf_qwen2(model: Any, folder: Path) -> None:
    """The LLM as a local Hugging Face Qwen2ForCausalLM directory (same weights), with the tokenizer."""
    from transformers import Qwen2ForCausalLM

    config = copy_config(model.model.config.text_config)
    hf = Qwen2ForCausalLM(config).eval()
    hf.model.load_state_dict(model.llm.state_dict())
    hf.lm_head.load_state_dict(model.lm_head.state_dict())
    hf.save_pretrained(str(folder))
    model.processor.tokenizer.save_pretrained(str(folder))


def copy_config(text_config: Any) -> Any:
    from transformers import Qwen2Config

    config = Qwen2Config(**text_config.to_dict())
    config.architectures = ["Qwen2ForCausalLM"]
    return config


class GenaiRunner:
    """onnxruntime-genai's Generator: `append_tokens` is the prefill, `generate_next_token` one decode step
    (its own greedy pick; the token fed does not change the time)."""

    def __init__(self, folder: Path, context: int) -> None:
        import onnxruntime_genai as og

        self.og, self.model, self.context = og, og.Model(str(folder)), context

    def prefill(self, ids: list[int]) -> Any:
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=self.context, do_sample=False)
        self.generator = self.og.Generator(self.model, params)
        self.generator.append_tokens(np.asarray([ids], np.int32))
        return self.generator.get_logits()[0, -1]

    def decode(self, token: int) -> Any:
        self.generator.generate_next_token()
        return self.generator.get_logits()[0, -1]


def build_ortgenai(model: Any, options: dict[str, Any], folder: Path, threads: int) -> Path:
    """The genai model builder's model folder of the LLM (same weights), run with `threads`."""
    import onnxruntime_genai  # noqa: F401 - skip before building

    hf, out = folder / "hf", folder / "genai"
    save_hf_qwen2(model, hf)
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(out),
               "-p", options["precision"], "-e", "cpu", "-c", str(folder / "cache")]
    done = subprocess.run(command, capture_output=True, text=True, env=_offline_env())
    if done.returncode:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise RuntimeError(f"onnxruntime-genai builder failed: {' '.join(tail)}")
    config_path = out / "genai_config.json"
    config = json.loads(config_path.read_text())
    config["model"]["decoder"].setdefault("session_options", {})["intra_op_num_threads"] = threads
    config_path.write_text(json.dumps(config, indent=1))
    return out


def prepare_ortgenai(model: Any, options: dict[str, Any], folder: Path, context: int, threads: int) -> Callable:
    out = build_ortgenai(model, options, folder, threads)
    return lambda: GenaiRunner(out, context)


def _offline_env() -> dict[str, str]:
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


PREPARE: dict[str, Callable[..., Callable[[], Any]]] = {
    "torch": prepare_torch, "ort": prepare_ort, "litert": prepare_litert, "executorch": prepare_executorch,
    "mlx": prepare_mlx, "llamacpp": prepare_llamacpp, "ortgenai": prepare_ortgenai}


# --- encoder graphs ------------------------------------------------------------------------
def export_encoder(model: Any, fmt: str, size: int, folder: Path, threads: int) -> Callable[..., Any]:
    """The vision graph (tower + projector) at `size` px through the harness's export step and the
    runtime's session options; returns a call taking `pixel_values=` (a torch tensor)."""
    from harness.exporting import read_manifest_file
    from harness.steps._base import StepContext, apply_step

    apply_step({"kind": "resolution", "size": size}, model, StepContext())
    kind = {"ort": "export-onnx", "litert": "export-tflite"}[fmt]
    exports = _step_into(model, [{"kind": kind, "components": ["vision"]}], folder)
    sub = {"ort": "onnx", "litert": "tflite"}[fmt]
    manifest = read_manifest_file(exports / sub)
    path = exports / sub / manifest["graphs"]["vision"]
    if fmt == "ort":
        import onnxruntime as ort

        from harness.runtimes.onnxruntime import OnnxRuntime

        session = ort.InferenceSession(str(path), sess_options=OnnxRuntime()._options(),
                                       providers=["CPUExecutionProvider"])
        return lambda pixel_values: session.run(None, {"pixel_values": pixel_values.numpy()})
    from harness.exporting.litert import LiteRTBackend, open_interpreter

    backend = LiteRTBackend({"vision": open_interpreter(path, threads)}, manifest["model"])
    return lambda pixel_values: backend.encode(pixel_values.numpy())
