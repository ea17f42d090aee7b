"""The generation loop every non-torch runtime shares: preprocess → encode → splice → prefill →
greedy decode with a KV cache, timed per stage exactly like torch eager (`LoadedModel.generate`).

A runtime supplies a *backend*; all arrays are numpy:

- ``encode(pixel_values: float32 (B, 3, H, W)) -> float32 (B, N, hidden)``: vision encoder +
  projector (the features that replace the ``<image>`` tokens).
- ``embed(input_ids: int64 (B, S)) -> float32 (B, S, hidden)``: the token embedding table.
- ``prefill(embeds (B, S, hidden), attention_mask int64 (B, S), position_ids int64 (B, S))
  -> (logits float32 (B, vocab) of the last position, past)``.
- ``decode(embeds (B, 1, hidden), attention_mask int64 (B, S + t), position_ids int64 (B, 1), past)
  -> (logits (B, vocab), past)``; ``past`` is opaque to the loop.
- optional ``past_nbytes(past) -> int``: the KV cache's bytes (reported like torch's).

Features are spliced where ``input_ids == image_token_id``, in row-major order, as transformers'
FastVLM does with ``masked_scatter``. Prompts are left-padded; positions are
``cumsum(mask) - 1`` clamped at 0, the same as the torch adapter, so greedy answers can be
compared token for token. The session also exposes ``encode_images(images)`` for parity checks.
"""

from __future__ import annotations

import time
from typing import Any

from harness.errors import RuntimeBackendError
from harness.models.fastvlm import Generation, StageTimes, _cut_at_eos, chat_prompts


class LoopSession:
    """A runtime session = this loop + a backend; quacks like `LoadedModel` for the suites."""

    def __init__(self, backend: Any, processor: Any, image_token_id: int, eos_ids: list[int]) -> None:
        self.backend = backend
        self.processor = processor
        self.image_token_id = int(image_token_id)
        self.eos_ids = [int(i) for i in eos_ids]
        self.visual_tokens: int | None = None

    def prepare(self, images: list[Any], questions: list[str]) -> dict[str, Any]:
        """Image preprocessing + tokenization, left-padded (numpy tensors)."""
        self.processor.tokenizer.padding_side = "left"
        rgb = [img.convert("RGB") if hasattr(img, "convert") else img for img in images]
        inputs = self.processor(images=rgb, text=chat_prompts(self.processor, questions), padding=True,
                                return_tensors="np")
        return {k: _numpy(v) for k, v in inputs.items()}

    def encode_images(self, images: list[Any]) -> Any:
        """Projected image features (B, N, hidden) for the parity check."""
        import numpy as np

        rgb = [img.convert("RGB") if hasattr(img, "convert") else img for img in images]
        pixels = _numpy(self.processor.image_processor(rgb, return_tensors="np")["pixel_values"])
        return np.asarray(self.backend.encode(pixels.astype(np.float32)), dtype=np.float32)

    def generate(self, images: list[Any], questions: list[str], max_new_tokens: int = 8,
                 min_new_tokens: int = 0, keep_logits: bool = False) -> Generation:
        import numpy as np

        times = StageTimes()
        start = time.perf_counter()
        inputs = self.prepare(images, questions)
        times.preprocess_ms = (time.perf_counter() - start) * 1e3

        mark = time.perf_counter()
        features = self.backend.encode(inputs["pixel_values"].astype(np.float32))
        times.vision_ms = (time.perf_counter() - mark) * 1e3

        mark = time.perf_counter()
        input_ids = inputs["input_ids"].astype(np.int64)
        mask = inputs["attention_mask"].astype(np.int64)
        embeds = np.array(self.backend.embed(input_ids), dtype=np.float32)
        image_mask = input_ids == self.image_token_id
        flat = np.asarray(features, dtype=np.float32).reshape(-1, embeds.shape[-1])
        if int(image_mask.sum()) != flat.shape[0]:
            raise RuntimeBackendError(f"the prompt has {int(image_mask.sum())} image tokens but the encoder gave "
                                      f"{flat.shape[0]} feature rows; the export does not match its processor")
        self.visual_tokens = int(image_mask[0].sum())
        embeds[image_mask] = flat
        positions = np.clip(np.cumsum(mask, axis=-1) - 1, 0, None).astype(np.int64)
        logits, past = self.backend.prefill(embeds, mask, positions)
        next_ids = np.asarray(logits).argmax(-1)
        times.prefill_ms = (time.perf_counter() - mark) * 1e3
        first_logits = np.asarray(logits, dtype=np.float32) if keep_logits else None

        generated = [next_ids]
        finished = np.isin(next_ids, self.eos_ids)
        last_pos = positions[:, -1]
        while len(generated) < max_new_tokens:
            if len(generated) >= min_new_tokens and bool(finished.all()):
                break
            mark = time.perf_counter()
            mask = np.concatenate([mask, np.ones_like(mask[:, :1])], axis=-1)
            last_pos = last_pos + 1
            step = self.backend.embed(next_ids[:, None].astype(np.int64))
            logits, past = self.backend.decode(np.asarray(step, dtype=np.float32), mask, last_pos[:, None], past)
            next_ids = np.asarray(logits).argmax(-1)
            generated.append(next_ids)
            finished |= np.isin(next_ids, self.eos_ids)
            times.decode_ms.append((time.perf_counter() - mark) * 1e3)
        times.total_ms = (time.perf_counter() - start) * 1e3
        nbytes = getattr(self.backend, "past_nbytes", None)
        times.kv_cache_bytes = nbytes(past) if nbytes else None
        rows = np.stack(generated, axis=1).tolist()
        token_ids = [_cut_at_eos(row, self.eos_ids) for row in rows]
        texts = self.processor.tokenizer.batch_decode(token_ids, skip_special_tokens=True)
        return Generation([t.strip() for t in texts], token_ids, times, first_logits)


def _numpy(value: Any) -> Any:
    import numpy as np

    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def export_session(folder: Any, fmt: str, artifact: str, manifest: dict[str, Any],
                   make_backend: Any) -> LoopSession:
    """The loop over an export: its own processor assets and the backend `make_backend(model facts)`
    builds; one line each for unusable assets and for a signature or fact the backend does not find."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise RuntimeBackendError(f"tokenizer/processor assets of the {fmt} export are unusable: {exc}") from None
    facts = manifest["model"]
    try:
        backend = make_backend(facts)
    except (KeyError, ValueError) as exc:
        raise RuntimeBackendError(f"{fmt} export of '{artifact}' lacks {exc} (a signature or model fact); "
                                  "rebuild the variant") from None
    return LoopSession(backend, processor, facts["image_token_id"], facts["eos_token_ids"])
