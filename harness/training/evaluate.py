"""Exact match of a model on nano-VQA-style rows (image, question, answer, kind): the nano build's
and the training steps' own check.

It scores the way the `nano-vqa` accuracy suite does (greedy answers of at most 10 tokens — a box
is 9 —, the registered `exact_match_or_box` metric: boxes by IoU >= 0.5, words by exact match, a
Wilson CI), but lives below the suites so that the trainer never imports a suite.
"""

from __future__ import annotations

from typing import Any

MAX_NEW_TOKENS = 10


def evaluate_exact_match(session: Any, dataset: Any, batch_size: int = 32) -> dict[str, Any]:
    """Exact match overall and per `kind` (when the rows have one), with the overall 95 % CI."""
    from harness.data.images import decode_image
    from harness.metrics.answer_or_box import ExactMatchOrBox
    from harness.results.stats import proportion_ci

    metric = ExactMatchOrBox()
    kinds = dataset["kind"] if "kind" in dataset.column_names else [None] * len(dataset)
    scores: list[float] = []
    for begin in range(0, len(dataset), batch_size):
        rows = dataset[begin:begin + batch_size]
        images = [decode_image(image) for image in rows["image"]]
        texts = session.generate(images, rows["question"], max_new_tokens=MAX_NEW_TOKENS).texts
        scores += [metric.score(text, [answer]) for text, answer in zip(texts, rows["answer"], strict=True)]
    n = len(scores)
    per_kind = {}
    for kind in sorted({str(k) for k in kinds if k is not None}):
        chosen = [s for s, k in zip(scores, kinds, strict=True) if str(k) == kind]
        per_kind[kind] = sum(chosen) / len(chosen)
    correct = int(round(sum(scores)))
    return {"exact_match": sum(scores) / n if n else float("nan"), "ci": list(proportion_ci(correct, n)), "n": n,
            "per_kind": per_kind}
