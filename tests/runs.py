"""Small suites and recipes for end-to-end runs on the nano reference (fast enough for CI)."""

from __future__ import annotations

import textwrap
from pathlib import Path

SUITES = {
    "acc-small": """\
        name: acc-small
        kind: accuracy
        dataset: {name: nano-vqa, split: test}
        limit: 60
        batch_size: 60
        max_new_tokens: 10
        metric: exact_match_or_box
        group_by: kind
        """,
    "lat-small": """\
        name: lat-small
        kind: latency
        items: 2
        warmup: 1
        min_iterations: 3
        min_seconds: 0
        new_tokens: 4
        """,
    "lat-gate": """\
        name: lat-gate
        kind: latency
        items: 1
        warmup: 1
        min_iterations: 5
        min_seconds: 0
        new_tokens: 2
        processes: 8
        """,
    "mem-small": "name: mem-small\nkind: memory\nrepeats: 1\nnew_tokens: 4\n",
    "size": "name: size\nkind: size\n",
}


TARGETS = "{max_ttft_ms: 1000, max_size_mb: 100, max_peak_memory_mb: 2000, min_retention: 0.5}"


def make_recipe(root: Path, variants: str, suites: str = "[acc-small, lat-small, mem-small, size]",
                name: str = "pipe", targets: str = TARGETS) -> Path:
    (root / "suites").mkdir(parents=True, exist_ok=True)
    for suite, text in SUITES.items():
        (root / "suites" / f"{suite}.yaml").write_text(textwrap.dedent(text))
    path = root / f"{name}.yaml"
    path.write_text(f"name: {name}\nbase: nano\nbaseline: base\nsuites: {suites}\n"
                    f"targets: {targets}\n"
                    f"variants:\n" + textwrap.indent(textwrap.dedent(variants), "  "))
    return path


VARIANTS = """\
- name: base
  steps: []
- name: int8-llm
  steps: [{kind: quantize, method: dynamic-int8, targets: [llm]}]
- name: crash
  steps: [{kind: fault, mode: abort}]
- name: res-32
  steps: [{kind: resolution, size: 32}]
"""
