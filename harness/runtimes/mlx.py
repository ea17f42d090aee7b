"""MLX over a variant's `exports/mlx/` folder: mlx-lm's own qwen2 `Model` (loaded by
`mlx_lm.utils.load_model`, quantized layers included) with mlx-lm's `BatchKVCache`, driven by the
shared generation loop (`harness.exporting.loop`), so stages are timed as on every runtime.

The image features come from the vision graph the export names (`settings.vision`): the
variant's torch vision tower + projector (its decoder is dropped after loading), the
`vision.onnx` beside the MLX weights (ONNX Runtime, CPU), or — for the whole VLM in mlx-vlm's
`fastvlm` layout — mlx-vlm's own FastViTHD and projector, so everything runs in MLX. They reach the MLX LLM as input
embeddings. Prompts are left-padded; `BatchKVCache(left_padding)` masks the padding and starts
each row's RoPE offset at its first real token, which equals the loop's `cumsum(mask) - 1`.

MLX picks its device: the CPU on Linux (`mlx[cpu]`), Metal on a Mac — the same code either way.
When mlx is not installed, `load()` raises `RuntimeUnavailable` (the worker records it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import MissingExtraError, RuntimeBackendError, RuntimeUnavailable, first_line, require
from harness.registries import RUNTIMES


class MlxBackend:
    """The generation loop's backend protocol over an mlx-lm model and an image encoder."""

    def __init__(self, model: Any, encoder: Callable[[Any], Any]) -> None:
        import mlx.core as mx

        self.model, self.encoder = model, encoder
        self.dtype = model.model.embed_tokens.scales.dtype if hasattr(model.model.embed_tokens, "scales") \
            else model.model.embed_tokens.weight.dtype
        self.mx = mx

    def encode(self, pixel_values: Any) -> Any:
        return self.encoder(pixel_values)

    def embed(self, input_ids: Any) -> Any:
        import numpy as np

        out = self.model.model.embed_tokens(self.mx.array(np.asarray(input_ids, dtype=np.int32)))
        return np.array(out.astype(self.mx.float32))

    def _logits(self, embeds: Any, cache: list[Any]) -> Any:
        import numpy as np

        mx = self.mx
        x = mx.array(np.asarray(embeds, dtype=np.float32)).astype(self.dtype)
        dummy = mx.zeros(x.shape[:2], dtype=mx.int32)  # ignored: the model reads input_embeddings
        logits = self.model(dummy, cache=cache, input_embeddings=x)[:, -1, :]
        return np.array(logits.astype(mx.float32))

    def prefill(self, embeds: Any, mask: Any, positions: Any) -> tuple[Any, list[Any]]:
        import numpy as np
        from mlx_lm.models.cache import BatchKVCache

        mask = np.asarray(mask)
        left = (mask.shape[1] - mask.sum(axis=1)).astype(int).tolist()
        if any(mask[row, pad:].min(initial=1) == 0 for row, pad in enumerate(left)):
            raise RuntimeBackendError("the MLX backend needs left-padded prompts (a row has padding after a token)")
        cache = [BatchKVCache(left) for _ in self.model.layers]
        return self._logits(embeds, cache), cache

    def decode(self, embeds: Any, mask: Any, positions: Any, past: list[Any]) -> tuple[Any, list[Any]]:
        return self._logits(embeds, past), past

    @staticmethod
    def past_nbytes(past: list[Any]) -> int:
        return int(sum(c.keys.nbytes + c.values.nbytes for c in past if c.keys is not None))


def torch_encoder(artifact: Path) -> Callable[[Any], Any]:
    """The variant's own vision tower + projector (replayed from its torch weights), LLM dropped."""
    import torch

    from harness.build.artifact import load_variant

    loaded = load_variant(artifact)
    loaded.model.model.language_model = None  # the MLX LLM replaces it; keep only vision + projector
    loaded.model.lm_head = None
    dtype = loaded.dtype

    def encode(pixel_values: Any) -> Any:
        with torch.inference_mode():
            features = loaded.image_features(torch.from_numpy(pixel_values).to(dtype)).pooler_output
        return features.float().numpy()

    return encode


class VlmLanguage:
    """mlx-vlm's `fastvlm` language model seen as the mlx-lm `Model` the backend drives (the same
    Qwen2 modules; it names the embeddings argument `inputs_embeds` and wraps its logits)."""

    def __init__(self, language_model: Any) -> None:
        self.language_model = language_model
        self.model, self.layers = language_model.model, language_model.layers

    def __call__(self, inputs: Any, cache: list[Any], input_embeddings: Any) -> Any:
        return self.language_model(inputs, cache=cache, inputs_embeds=input_embeddings).logits


def mlx_vlm_parts(folder: Path) -> tuple[Any, Callable[[Any], Any]]:
    """(LLM, image encoder) of an mlx-vlm `fastvlm` directory: everything runs in MLX."""
    import mlx.core as mx
    import numpy as np

    utils = require("mlx_vlm.utils", "mlx", "runtime mlx with an mlx-vlm export")
    try:
        vlm = utils.load_model(folder)
    except Exception as exc:  # noqa: BLE001 - mlx-vlm raises untyped errors for bad files and configs
        raise RuntimeBackendError(f"mlx-vlm cannot load '{folder}' (corrupt or incomplete): "
                                  f"{type(exc).__name__}: {first_line(exc)}") from None
    dtype = vlm.vision_tower.vision_model.patch_embed.blocks[0].reparam_conv.weight.dtype

    def encode(pixel_values: Any) -> Any:
        _, features, _ = vlm.vision_tower(mx.array(pixel_values).transpose(0, 2, 3, 1).astype(dtype))
        batch, height, width, channels = features.shape
        return np.array(vlm.mm_projector(features.reshape(batch, height * width, channels)).astype(mx.float32))

    return VlmLanguage(vlm.language_model), encode


def onnx_encoder(path: Path) -> Callable[[Any], Any]:
    ort = require("onnxruntime", "onnx", "runtime mlx with an ONNX vision graph")
    import torch

    if not path.is_file():
        raise RuntimeBackendError(f"MLX export's vision graph '{path}' is missing; rebuild the variant")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return lambda pixel_values: session.run(None, {"pixel_values": pixel_values})[0]


@RUNTIMES.register("mlx", "MLX (mlx-lm qwen2 + its KV cache) over exports/mlx: CPU on Linux, Metal on a Mac; "
                          "vision from the graph the export names")
class Mlx:
    accepts: ClassVar[tuple[str, ...]] = ("mlx",)
    #: (module, extra) the runtime imports: `harness run` checks they are installed before it starts.
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("mlx.core", "mlx"), ("mlx_lm", "mlx"))
    preload_modules: ClassVar[tuple[str, ...]] = ("mlx.core", "mlx_lm.models.qwen2", "mlx_lm.models.cache", "numpy")

    def load(self, artifact: Path) -> Any:
        try:
            require("mlx.core", "mlx", "runtime mlx")
            utils = require("mlx_lm.utils", "mlx", "runtime mlx")
        except MissingExtraError as exc:
            raise RuntimeUnavailable(str(exc)) from None

        from harness.exporting import read_export
        from harness.exporting.loop import export_session

        folder, manifest = read_export(artifact, "mlx")
        graphs, vision = manifest.get("graphs", {}), manifest.get("settings", {}).get("vision", "torch")
        if vision == "mlx":
            model, encoder = mlx_vlm_parts(folder / graphs.get("vlm", "vlm"))
            return export_session(folder, "mlx", artifact.name, manifest, lambda facts: MlxBackend(model, encoder))
        try:
            model, _ = utils.load_model(folder / graphs.get("llm", "llm"))
        except Exception as exc:  # noqa: BLE001 - mlx-lm raises untyped errors for bad files and configs
            raise RuntimeBackendError(f"mlx-lm cannot load the MLX export of '{artifact.name}' (corrupt or "
                                      f"incomplete): {type(exc).__name__}: {first_line(exc)}") from None
        graph = graphs.get("vision", "vision.onnx")
        encoder = onnx_encoder(folder / graph) if vision == "onnx" else torch_encoder(artifact)
        return export_session(folder, "mlx", artifact.name, manifest, lambda facts: MlxBackend(model, encoder))

    def info(self) -> dict[str, Any]:
        import torch

        from harness.environment import package_version

        try:
            mx = require("mlx.core", "mlx", "runtime mlx")
            device = str(mx.default_device())
        except Exception as exc:  # noqa: BLE001 - info must never break a run
            return {"runtime": "mlx", "error": str(exc)}
        return {"runtime": "mlx", "mlx": mx.__version__, "mlx_lm": package_version("mlx-lm"), "device": device,
                "kv_cache": "mlx_lm BatchKVCache (left padding)",
                "vision_threads": torch.get_num_threads()}
