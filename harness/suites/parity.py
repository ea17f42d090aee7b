"""Parity suite: a runtime's session against the torch reference of the *same* artifact.

Export steps keep the variant's torch weights, so `load_variant(artifact)` is exactly what the
export was made from. Measured: the encoder output (projected image features) and the
first-token logits — max |difference|, max relative to the reference's largest magnitude, and
cosine per item (min and mean) — and greedy answer agreement on a dataset's items (exact text,
and exact tokens). The plan adds this suite to every non-torch runtime automatically
(`suites/parity.yaml`, decided in the run's plan); `parity:` in a recipe gates on it
(`Parity.gate_checks`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from harness.data.sources import DatasetSpec, load_split
from harness.errors import DataError
from harness.registries import SUITE_KINDS
from harness.spec.suite_files import SuiteConfig
from harness.suites._context import SuiteContext
from harness.suites._kind import SuiteKind


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
class Parity(SuiteKind):
    Config = ParityConfig
    section: ClassVar[str | None] = None
    headline: ClassVar[str | None] = "parity"
    report_template: ClassVar[str] = "suites/parity.html.j2"
    report_scope: ClassVar[str] = "run"

    def run(self, config: ParityConfig, ctx: SuiteContext) -> dict[str, Any]:
        import numpy as np

        from harness.build.artifact import load_variant

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

    def required_columns(self, config: ParityConfig) -> list[str]:
        return ["image", config.question_column]

    def summarize(self, data: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
        return {"status": "ok", **{k: data.get(k) for k in SUMMARY_FIELDS}}

    def unmeasured(self, status: str, error: str | None) -> dict[str, Any] | None:
        return {"status": "unavailable" if status == "unavailable" else "error", "error": error}

    def verdict(self, headline: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
        return evaluate_parity(headline, spec.get("parity") or {})

    def gate_checks(self, variant: str, runtime: str, headline: dict[str, Any]) -> list[Any]:
        """One `parity` case per exported artifact when the recipe sets `parity:` thresholds."""
        from harness.results.gate import Check

        verdict = headline.get("verdict") or {}
        status = verdict.get("status")
        if status in (None, "report only"):
            return []
        if status in ("unavailable", "not measured"):  # the gate cannot decide: not measured never passes
            how = "not measurable here" if status == "unavailable" else "not measured"
            return [Check(variant, runtime, "parity", False, f"parity {how}: {verdict.get('why')}", error=True)]
        if status == "fail":
            return [Check(variant, runtime, "parity", False, "parity: " + "; ".join(verdict["failures"]))]
        summary = (f"parity: agreement {headline['agreement']:.3f}, encoder cosine "
                   f"{headline['encoder']['cosine_min']:.4f}, logit cosine {headline['logits']['cosine_min']:.4f} "
                   f"within {verdict.get('limits')}")
        return [Check(variant, runtime, "parity", True, summary)]


SUMMARY_FIELDS = ("encoder", "logits", "agreement", "token_agreement", "n", "numeric_items", "disagreements")


def evaluate_parity(parity: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    """The recipe's `parity:` thresholds against one artifact's parity numbers: pass / fail /
    unavailable / not measured, with every failing threshold named (harness gate reads it)."""
    limits = {k: v for k, v in policy.items() if v is not None}
    if not limits:
        return {"status": "report only", "failures": []}
    if parity.get("status") == "unavailable":
        return {"status": "unavailable", "why": parity.get("error"), "failures": []}
    if parity.get("status") != "ok":
        return {"status": "not measured", "why": parity.get("error"), "failures": []}
    failures = []
    if "min_agreement" in limits and parity["agreement"] < limits["min_agreement"]:
        failures.append(f"agreement {parity['agreement']:.3f} < {limits['min_agreement']}")
    if "min_cosine" in limits:
        for part in ("encoder", "logits"):
            cosine = parity[part]["cosine_min"]
            if cosine < limits["min_cosine"]:
                failures.append(f"{part} cosine {cosine:.4f} < {limits['min_cosine']}")
    if "max_logit_abs" in limits and parity["logits"]["max_abs"] > limits["max_logit_abs"]:
        failures.append(f"logit max-abs {parity['logits']['max_abs']:.3g} > {limits['max_logit_abs']}")
    return {"status": "fail" if failures else "pass", "failures": failures, "limits": limits}
