"""Integration: one variant of every compression step family, built and measured through a real
recipe on the nano reference (small suites), then checked against what each family must do."""

from __future__ import annotations

import json

import pytest

from harness.run.runner import run

from .runs import make_recipe

CALIBRATION = "{dataset: {name: nano-vqa, split: train}, items: 32, batch_size: 16}"
VARIANTS = f"""\
- name: base
- name: int8-dynamic
  steps: [{{kind: quantize, method: dynamic-int8}}]
- name: int4-rtn
  steps: [{{kind: weight-quant, algorithm: rtn, bits: 4, group_size: 32}}]
- name: static-int8
  steps: [{{kind: static-int8, targets: [vision, projector], calibration: {CALIBRATION}}}]
- name: mixed
  steps: [{{kind: mixed-precision, bits: [4, 8], max_size_mb: 0.95, calibration: {CALIBRATION}}}]
- name: magnitude-50
  steps: [{{kind: prune, method: magnitude, sparsity: 0.5}}]
- name: drop-mlp-50
  steps: [{{kind: structured-prune, what: mlp, amount: 0.5}}]
- name: pool-2x2
  steps: [{{kind: token-merge, method: avg-pool, factor: 2}}]
- name: kv-int8
  steps: [{{kind: kv-cache, quantize: int8, residual_length: 4}}]
"""


@pytest.fixture(scope="module")
def compression_run(tmp_path_factory, nano_dir):
    root = tmp_path_factory.mktemp("compression")
    recipe = make_recipe(root, VARIANTS, suites="[acc-small, lat-small, size]", name="families")
    run_dir = run(recipe, output=root / "reports", progress=False)
    summary = json.loads((run_dir / "results.json").read_text())
    return run_dir, {v["name"]: v for v in summary["variants"]}


def measured(variants, name):
    return variants[name]["runtimes"]["torch-eager"]


def test_every_family_builds_measures_and_says_what_it_did(compression_run):
    run_dir, variants = compression_run
    assert {name: v["status"] for name, v in variants.items()} == dict.fromkeys(variants, "ok")
    for name, variant in variants.items():
        if name != "base":
            assert variant["notes"], f"{name} reported nothing about what it changed"
    assert "pool-2x2" in (run_dir / "report.html").read_text()


def test_quantized_and_structured_variants_really_shrink(compression_run):
    _, variants = compression_run
    base = measured(variants, "base")["size"]
    for name in ("int8-dynamic", "int4-rtn", "static-int8", "mixed", "drop-mlp-50"):
        assert measured(variants, name)["size"]["weights_mb"] < 0.9 * base["weights_mb"], name
    int4 = measured(variants, "int4-rtn")["size"]
    assert int4["packed_ratio_to_fp16"] <= 0.3 and "INT4 packed" in int4["storage_format"]
    assert measured(variants, "mixed")["size"]["total_mb"] <= 0.95 + 0.1  # budget is on model.safetensors
    assert measured(variants, "magnitude-50")["size"]["weights_mb"] == pytest.approx(base["weights_mb"], rel=0.01)


def test_tokens_and_cache_families_change_what_they_should(compression_run):
    _, variants = compression_run
    assert measured(variants, "base")["latency"]["visual_tokens"] == 16
    assert measured(variants, "pool-2x2")["latency"]["visual_tokens"] == 4
    kv, base = measured(variants, "kv-int8")["latency"], measured(variants, "base")["latency"]
    assert kv["kv_cache_bytes"] < base["kv_cache_bytes"]


def test_gentle_compressions_keep_accuracy(compression_run):
    _, variants = compression_run
    for name in ("int8-dynamic", "int4-rtn", "static-int8", "mixed", "kv-int8"):
        accuracy = measured(variants, name)["accuracy"]["acc-small"]
        assert accuracy["retention"] >= 0.95, (name, accuracy["retention"])
