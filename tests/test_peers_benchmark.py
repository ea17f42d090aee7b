"""benchmarks/peers_0p5b.py at --quick dims: its measurement functions on the runtimes installed
here give a JSON of positive medians, ratios to the fastest arm >= 1 (1 for the fastest), a
roofline per entry, and a reason for every arm that could not run."""

from __future__ import annotations

import argparse
import json

import pytest

from .conftest import load_benchmark

# fast arms: torch, the harness's ORT exports, llama.cpp Q4_0 (when llama-cpp-python is installed)
LLM = ["torch-fp32", "torch-bf16", "ort-fp32", "ort-int4", "llamacpp-q4_0", "ortgenai-int4"]
ENCODER = ["enc-torch", "enc-torch-reparam", "enc-torch-bf16", "enc-ort"]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("peers_0p5b")


@pytest.fixture(scope="module")
def result(bench, tmp_path_factory):
    pytest.importorskip("onnxruntime")

    def unavailable(*args, **kwargs):
        raise ImportError("onnxruntime_genai is not installed (made up by the test)")

    args = argparse.Namespace(quick=True, only=LLM + ENCODER, rounds=2, threads=1, sizes=None,
                              work=tmp_path_factory.mktemp("peers"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(bench.PREPARE, "ortgenai", unavailable)
        return json.loads(json.dumps(bench.measure_all(args)))  # JSON-able, as written


def check_ratios(entries: dict, key: str | None) -> None:
    medians = {name: (e[key] if key else e)["median"] for name, e in entries.items()}
    fastest = min(medians.values())
    for name, entry in entries.items():
        stats = entry[key] if key else entry
        assert stats["median"] > 0 and stats["min"] <= stats["median"] <= stats["max"] and stats["n"] == 2
        assert stats["ratio_to_fastest"] == pytest.approx(medians[name] / fastest)
        assert stats["ratio_to_fastest"] >= 1 and (stats["ratio_to_fastest"] > 1 or medians[name] == fastest)


def test_llm_arms_measure_and_compare(result):
    arms = result["llm"]["arms"]
    assert set(arms) == {*LLM, "ort-int4-acc0", "ort-int4-old", "ort-int4-fused"}  # a name selects its variants
    measured = {name: arm for name, arm in arms.items() if "skipped" not in arm}
    assert {"torch-fp32", "torch-bf16", "ort-fp32", "ort-int4"} <= set(measured)
    for key in ("prefill_ms", "decode_ms"):
        check_ratios(measured, key)
    for arm in measured.values():
        roof = arm["decode_roofline"]
        assert roof["weight_bytes_per_token"] > 0 and roof["pct_of_roofline"] > 0
        assert 0 < arm["logits_cosine_to_torch_fp32"] <= 1 + 1e-9
    assert measured["ort-fp32"]["logits_cosine_to_torch_fp32"] > 0.999
    if "llamacpp-q4_0" in measured:  # the only peer measured here (ortgenai is made unavailable)
        peer = measured["llamacpp-q4_0"]["decode_ms"]["median"]
        for arm in measured.values():
            assert arm["decode_ms"]["ratio_to_fastest_peer"] == pytest.approx(arm["decode_ms"]["median"] / peer)
    assert measured["torch-fp32"]["decode_roofline"]["nominal_bits_per_weight"] == 32
    assert result["peaks"]["copy_bandwidth_gbs"] > 0 and result["peaks"]["gemm_fp32_gflops"] > 0


def test_an_arm_that_cannot_run_carries_its_reason(result):
    arms = result["llm"]["arms"]
    assert "not installed" in arms["ortgenai-int4"]["skipped"]
    for name, arm in arms.items():
        if "skipped" in arm:
            assert arm["skipped"] and arm["family"] and "decode_ms" not in arm, name


def test_encoder_arms_per_size(result, bench):
    sizes = bench.DIMS["quick"][2]
    assert set(result["encoder"]) == {str(s) for s in sizes}
    for per in result["encoder"].values():
        assert per["tower_flops"] > 0 and set(per["arms"]) == set(ENCODER)
        check_ratios(per["arms"], None)
        assert all(a["gflops"] > 0 and a["pct_of_best_gemm_peak"] > 0 for a in per["arms"].values())


def test_only_selects_arms_and_families(bench):
    assert bench.selected("ort-int4", ["ort"]) and bench.selected("ort-int4", ["ort-int4"])
    assert not bench.selected("ortgenai-int4", ["ort"]) and bench.selected("ort-int4-acc0", ["ort-int4"])
    assert bench.selected("enc-ort", None)


def test_static_cache_exports_hold_the_real_prompt(bench):
    """The LiteRT / ExecuTorch arms' cache holds the real run's prompt in whole prefill chunks (287 slots
    once refused a 267-token prompt: 5 chunks of 64 need 320)."""
    from .conftest import load_benchmark

    formats = load_benchmark("peers_formats")
    prompt, tokens, _ = bench.DIMS["real"]
    settings = formats.static_cache(prompt + tokens + 4)
    chunks = -(-(prompt - 1) // settings["prefill_length"])
    assert settings == {"prefill_length": 64, "cache_length": 320}
    assert chunks * settings["prefill_length"] <= settings["cache_length"] and prompt + tokens < 320
