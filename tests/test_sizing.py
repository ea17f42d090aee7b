"""Real sizes without allocation: parameter counts and storage estimates on the meta device, and a
7B recipe's suites on a machine that cannot hold it (size estimated, latency unavailable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.models.sizing import build_bytes, does_not_fit, estimate, meta_model

#: Published totals (FASTVLM.md: 758.8 M, ~1.91 B, ~7.77 B) and Qwen2-7B's LLM (~7.6 B with its LM head).
PUBLISHED_TOTAL = {"fastvlm-0.5b": 758.8e6, "fastvlm-1.5b": 1.91e9, "fastvlm-7b": 7.77e9}


def _peak_rss_reset() -> int | None:
    """Reset this process's VmHWM (Linux clear_refs 5) and return the current RSS, or None if not possible.
    The libraries are imported first: their code is not what is measured."""
    from timm.models import fastvit  # noqa: F401
    from transformers import FastVlmForConditionalGeneration, Qwen2Config  # noqa: F401

    from harness.models.shapes import random_config

    random_config("fastvlm-0.5b")  # the tokenizer and processor
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_kb("VmRSS") * 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


@pytest.mark.parametrize("shape", ["fastvlm-0.5b", "fastvlm-7b"])
def test_meta_estimate_counts_the_real_module_tree(shape):
    from harness.models.shapes import random_config

    start = _peak_rss_reset()
    result = estimate(shape)
    if start is not None:
        grown = _status_kb("VmHWM") * 1024 - start
        assert grown < 500e6, f"estimating {shape} grew the peak RSS by {grown / 1e6:.0f} MB"
    model = meta_model(random_config(shape)[0])
    assert all(p.is_meta for p in model.parameters())  # nothing was allocated
    assert result["params"]["total"] == sum(p.numel() for p in model.parameters())
    parts = result["params"]
    assert parts["vision"] + parts["projector"] + parts["llm"] == parts["total"]
    assert abs(parts["total"] - PUBLISHED_TOTAL[shape]) / PUBLISHED_TOTAL[shape] < 0.01, parts
    assert abs(parts["vision"] - 122.7e6) / 122.7e6 < 0.01  # FastViTHD as used by the VLM
    if shape == "fastvlm-7b":
        assert abs(parts["llm"] - 7.62e9) / 7.62e9 < 0.01, parts  # Qwen2-7B, untied LM head


def test_byte_estimates_follow_the_storage_formats():
    result = estimate("fastvlm-7b")
    total, quantized, sizes = result["params"]["total"], result["quantized_linear_params"], result["bytes"]
    assert sizes["fp32"] == 4 * total and sizes["fp16"] == 2 * total
    rest = 2 * (total - quantized)
    assert 0.9 * result["params"]["llm"] < quantized < result["params"]["llm"]  # embeddings/norms stay fp16
    for group in (32, 64, 128):  # every in_features of the 7B is a multiple of 128: no ragged groups
        assert sizes[f"int4_g{group}"] == quantized // 2 + 2 * quantized // group + rest
    assert sizes["int4_g32"] > sizes["int4_g64"] > sizes["int4_g128"]
    assert sizes["fp16"] > sizes["int8"] > sizes["int4_g32"]
    print({k: f"{v / 1e9:.2f} GB" for k, v in sizes.items()})


def test_fit_decision_compares_needed_and_available_memory(monkeypatch):
    params = 758_800_000
    monkeypatch.setenv("FASTVLM_HARNESS_AVAILABLE_MEMORY", str(10**12))
    assert does_not_fit("fastvlm-0.5b", params) is None
    monkeypatch.setenv("FASTVLM_HARNESS_AVAILABLE_MEMORY", str(build_bytes(params) - 1))
    reason = does_not_fit("fastvlm-0.5b", params)
    assert reason is not None and "needs ~" in reason and "available here" in reason and "\n" not in reason


def test_7b_size_is_estimated_and_latency_is_unavailable(tmp_path, monkeypatch):
    """Through the worker, as a recipe run does: no 7B model is allocated."""
    from harness.build.artifact import load_variant
    from harness.errors import ModelLoadError, RuntimeUnavailable
    from harness.run.plan import job_for
    from harness.run.worker import run_variant

    monkeypatch.setenv("FASTVLM_HARNESS_AVAILABLE_MEMORY", str(16 * 1024**3))  # the same on any machine
    base = {"model": "random:fastvlm-7b"}
    suites = [{"name": "size", "kind": "size"}, {"name": "lat", "kind": "latency"}]
    job = job_for(base, [], ["torch"], ["torch-eager"], suites, tmp_path / "cache", tmp_path / "work")
    start = _peak_rss_reset()
    result = run_variant(job)
    if start is not None:
        grown = _status_kb("VmHWM") * 1024 - start
        assert grown < 1e9, f"the 7B size-only run grew the peak RSS by {grown / 1e6:.0f} MB"
    measured = result["measurements"]["torch-eager"]["suites"]
    size, latency = measured["size"], measured["lat"]
    params = estimate("fastvlm-7b")["params"]
    assert size["status"] == "ok" and size["estimated"] is True
    assert size["llm_params"] == params["llm"] and size["estimate"]["params"]["total"] == params["total"]
    assert size["weights_mb"] == pytest.approx(4 * params["total"] / 1e6)
    assert size["total_mb"] > size["weights_mb"]  # plus the config and tokenizer files on disk
    assert latency["status"] == "unavailable"
    assert latency["error"].startswith("random:fastvlm-7b (7.76 B parameters) needs ~") and "\n" not in latency["error"]
    assert result["build"]["size_only"] == latency["error"]
    with pytest.raises(RuntimeUnavailable, match="available here"):
        load_variant(Path(result["artifact"]))
    with pytest.raises(ModelLoadError, match="a variant with steps needs the built model"):
        run_variant(job_for(base, [{"kind": "cast", "dtype": "bf16"}], ["torch"], ["torch-eager"], suites,
                            tmp_path / "cache", tmp_path / "work"))
