"""Parity suite: a runtime's session against the torch reference of the *same* artifact.

Export steps keep the variant's torch weights, so `load_variant(artifact)` is exactly what the
export was made from. Measured: the encoder output (projected image features) and the
first-token logits — max |difference|, max relative to the reference's largest magnitude, and
cosine per item (min and mean) — and greedy answer agreement on a dataset's items (exact text,
and exact tokens). The worker adds this suite to every non-torch runtime automatically
(`suites/parity.yaml`); `parity:` in a recipe gates on it (harness/gate.py).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from harness.data.sources import DatasetSpec, load_split
from harness.errors import DataError
from harness.registries import SUITE_KINDS
from harness.suites._context import SuiteContext
from harness.suites._spec import SuiteConfig


class ParityConfig(SuiteConfig):
    kind: Literal["parity"] = "parity"
    dataset: DatasetSpec = DatasetSpec(name="nano-vqa", split="test")
    limit: int = Field(200, gt=0, description="items for answer agreement")
    numeric_items: int = Field(8, gt=0, description="items for encoder-output and first-token-logit numbers")
    batch_size: int = Field(50, gt=0)
    max_new_tokens: int = Field(8, gt=0)
    question_column: str = "question"


def compare_arrays(reference: Any, candidate: Any) -> dict[str, float]:
    """max-abs, relative max-abs and per-item cosine (min, mean) of two (items, ...) arrays."""
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    got = np.asarray(candidate, dtype=np.float64).reshape(len(candidate), -1)
    if ref.shape != got.shape:
        raise DataError(f"parity: shapes differ (reference {ref.shape}, runtime {got.shape})")
    diff = np.abs(ref - got)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
    cosine = np.where(norms > 0, (ref * got).sum(axis=1) / np.maximum(norms, 1e-300), 1.0)
    scale = float(np.abs(ref).max()) or 1.0
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "max_rel": float(diff.max()) / scale,
            "cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean())}


def _logits(value: Any) -> Any:
    import numpy as np

    return value.float().numpy() if hasattr(value, "float") and hasattr(value, "numpy") else np.asarray(value)


@SUITE_KINDS.register("parity", "runtime vs the torch weights of its artifact: encoder/logit error, answer agreement")
class Parity:
    Config = ParityConfig

    def run(self, config: ParityConfig, ctx: SuiteContext) -> dict[str, Any]:
        import numpy as np

        from harness.artifacts import load_variant

        data = load_split(config.dataset, ctx.recipe_dir)
        for column in ("image", config.question_column):
            if column not in data.column_names:
                raise DataError(f"suite '{config.name}': dataset {config.dataset.name} has no column '{column}'")
        data = data.select(range(min(config.limit, len(data))))
        session = ctx.session()
        reference = load_variant(ctx.artifact)
        numeric = data.select(range(min(config.numeric_items, len(data))))
        images, questions = numeric["image"], numeric[config.question_column]
        encoder = compare_arrays(reference.encode_images(images), session.encode_images(images))
        ref_first = reference.generate(images, questions, max_new_tokens=1, keep_logits=True).first_logits
        got_first = session.generate(images, questions, max_new_tokens=1, keep_logits=True).first_logits
        ref_logits, got_logits = _logits(ref_first), _logits(got_first)
        logits = compare_arrays(ref_logits, got_logits)
        logits["top1_agreement"] = float(np.mean(ref_logits.argmax(-1) == got_logits.argmax(-1)))

        ids = data["id"] if "id" in data.column_names else [str(i) for i in range(len(data))]
        same_text = same_tokens = 0
        differing = []
        for begin in range(0, len(data), config.batch_size):
            rows = data[begin:begin + config.batch_size]
            ref = reference.generate(rows["image"], rows[config.question_column], max_new_tokens=config.max_new_tokens)
            got = session.generate(rows["image"], rows[config.question_column], max_new_tokens=config.max_new_tokens)
            for offset, (a, b, ta, tb) in enumerate(zip(ref.texts, got.texts, ref.token_ids, got.token_ids)):
                same_text += a.strip().lower() == b.strip().lower()
                same_tokens += list(ta) == list(tb)
                if a.strip().lower() != b.strip().lower() and len(differing) < 10:
                    differing.append({"id": str(ids[begin + offset]), "question": rows[config.question_column][offset],
                                      "reference": a, "runtime": b})
        n = len(data)
        return {"reference": "torch eager on the artifact's own torch weights", "encoder": encoder, "logits": logits,
                "agreement": same_text / n, "token_agreement": same_tokens / n, "n": n,
                "numeric_items": len(numeric), "disagreements": differing}
