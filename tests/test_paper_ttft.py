"""benchmarks/paper_ttft.py without its measurement: the paper's inputs give the paper's token counts
through each shape's own processor, and the ratio's interval is the bootstrap over rounds."""

from __future__ import annotations

import pytest

from .conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("paper_ttft")


def test_the_paper_inputs_give_the_papers_visual_tokens(bench):
    fast, llava = bench.INPUTS["paper"]
    assert bench.input_tokens("fastvlm-0.5b", fast) == bench.PAPER["visual_tokens"]["fastvlm"] == 256
    # LLaVA-OV at 1152 px: base image + the 3x3 AnyRes grid = 10 x 729 = 7290 tokens, plus one newline per row (81)
    assert bench.input_tokens("llava-onevision-0.5b", llava) == bench.PAPER["visual_tokens"]["llava_onevision"] + 81


def test_the_ratio_interval_is_a_bootstrap_over_rounds(bench):
    ratios = [80.0, 84.0, 85.0, 86.0, 90.0, 83.0, 88.0]
    found = bench.median_ratio_ci(ratios)
    assert found["median"] == 85.0 and found["rounds"] == 7
    low, high = found["ci95"]
    assert min(ratios) <= low < 85.0 < high <= max(ratios)
    assert bench.median_ratio_ci([85.0])["ci95"] is None
