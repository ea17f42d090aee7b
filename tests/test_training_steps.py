"""The training steps on tiny models: distill, qat, finetune (their contract examples run in
tests/test_steps.py; these check what each promises)."""

from __future__ import annotations

import json

import pytest

from harness.steps._base import StepContext, apply_step

from .conftest import build_tiny


@pytest.fixture(autouse=True, scope="module")
def _single_thread(one_thread):
    """Every test here on one torch thread (see conftest.one_thread)."""


def run(loaded, steps, ctx=None):
    ctx = ctx or StepContext()
    for raw in steps:
        apply_step(raw, loaded, ctx)
    return ctx


FAST = {"items": 24, "batch_size": 4}


def test_distill_reduces_kl_and_records_its_curve():
    student = build_tiny(seed=1)
    teacher = build_tiny(seed=0)
    ctx = StepContext()
    from harness.steps import distill

    config = distill.DistillConfig(steps=12, lr=1e-2, warmup=2, **FAST)
    batcher = distill.DistillBatcher(config, student, teacher, distill.training_rows(config, "distill", None))
    before = float(batcher.loss(student.model, [0, 1, 2, 3]).detach())
    ctx.records.append({})
    ctx.applied = 1
    distill.run_training(config, student, batcher, ctx, "distill")
    after = float(batcher.loss(student.model, [0, 1, 2, 3]).detach())
    assert after < 0.7 * before
    record = ctx.records[0]["training"]
    assert record["steps"] == 12 and len(record["curve"]) == 12 and record["seconds"] > 0
    assert record["curve"][-1]["loss"] < record["curve"][0]["loss"]


def test_distill_hidden_matching_shape_mismatch_is_one_line():
    from harness.errors import StepError

    loaded = build_tiny()
    with pytest.raises(StepError) as info:
        run(loaded, [{"kind": "token-merge", "method": "avg-pool", "factor": 2},
                     {"kind": "distill", "steps": 2, "hidden_weight": 1.0, "teacher": None, **FAST}],
            StepContext(base_model=None))
    message = str(info.value)
    # no base model known and distil is not the first step: the teacher is missing
    assert "no teacher" in message and "\n" not in message


def test_distill_hidden_mismatch_against_base_teacher(tmp_path):
    from harness.errors import StepError
    from harness.steps import distill

    student, teacher = build_tiny(), build_tiny()
    run(student, [{"kind": "token-merge", "method": "avg-pool", "factor": 2}])
    config = distill.DistillConfig(steps=2, hidden_weight=1.0, **FAST)
    batcher = distill.DistillBatcher(config, student, teacher, distill.training_rows(config, "distill", None))
    with pytest.raises(StepError, match=r"hidden matching needs .* got \(4, 32\) vs \(16, 32\)") as info:
        batcher.check(student.model)
    assert "\n" not in str(info.value)
    # without hidden matching the same student distils fine: KL only on answer tokens
    ok = distill.DistillBatcher(distill.DistillConfig(steps=2, **FAST), student, teacher,
                                distill.training_rows(config, "distill", None))
    ok.check(student.model)
    assert float(ok.loss(student.model, [0, 1])) > 0


def test_qat_packs_what_it_trained(tmp_path):
    """The packed layer computes what the fake-quantized layer computed during training."""
    import torch
    from torchao.quantization.qat import FakeQuantizedLinear

    from harness.steps import qat
    from harness.steps._packed import PackedLinear

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 24)
    for bits, group, act in ((4, 16, None), (8, -1, "int8")):
        config = qat.QatConfig(steps=1, bits=bits, group_size=group, activations=act)
        weight_cfg, act_cfg = qat._fake_configs(config, 64)
        fake = FakeQuantizedLinear.from_linear(torch.nn.Linear(64, 24), act_cfg, weight_cfg)
        fake.load_state_dict(linear.state_dict())
        packed = qat._pack(fake, config)
        assert isinstance(packed, PackedLinear) and packed.qweight.dtype == torch.uint8
        assert packed.qweight.shape == (24, 64 * bits // 8)
        with torch.no_grad():
            expected = fake.weight_fake_quantizer(fake.weight)
            assert (packed.dequantize() - expected).abs().max() < 1e-6
            x = torch.randn(5, 64)
            assert torch.allclose(packed(x), fake(x), atol=2e-3)  # fp16 bias is the only difference


def test_qat_variant_is_packed_and_reloads(tmp_path, images):
    from safetensors import safe_open

    from harness.build.artifact import load_variant
    from harness.steps._packed import PackedLinear

    from .test_steps import build_and_save

    steps = [{"kind": "qat", "steps": 4, "bits": 4, "group_size": 16, "lr": 1e-3, **FAST}]
    loaded, notes = build_and_save(tmp_path, steps)
    layer = loaded.model.get_submodule("model.language_model.layers.0.mlp.up_proj")
    assert isinstance(layer, PackedLinear) and layer.bits == 4
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())  # noqa: SIM118 - safe_open is not iterable
    assert "model.language_model.layers.0.mlp.up_proj.qweight" in keys
    assert "model.language_model.layers.0.mlp.up_proj.weight" not in keys
    manifest = json.loads((tmp_path / "harness_variant.json").read_text())
    assert manifest["step_records"][0]["training"]["steps"] == 4
    reloaded = load_variant(tmp_path)
    assert isinstance(reloaded.model.get_submodule("model.language_model.layers.0.mlp.up_proj"), PackedLinear)
    first = loaded.generate(images["image"], images["question"], max_new_tokens=3).token_ids
    assert reloaded.generate(images["image"], images["question"], max_new_tokens=3).token_ids == first
    assert any("stored as INT4 g16 sym packed" in n for n in notes)


def test_finetune_lora_merges_into_plain_weights(tmp_path):
    import torch

    loaded = build_tiny()
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    ctx = run(loaded, [{"kind": "finetune", "steps": 3, "lr": 5e-2, "targets": ["llm"], "lora": {"r": 4}, **FAST}])
    after = loaded.model.state_dict()
    assert set(after) == set(before)  # adapters merged away: the same plain architecture
    assert not any("lora" in name for name, _ in loaded.model.named_modules())
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".self_attn." in k or ".mlp." in k or k.startswith("lm_head") for k in changed)
    assert any("LoRA r=4" in n for n in ctx.notes)


def test_training_data_without_columns_is_one_line(tmp_path):
    from harness.errors import StepError

    (tmp_path / "rows.jsonl").write_text('{"question": "what colour?", "answer": "red"}\n')
    with pytest.raises(StepError, match=r"lacks column\(s\) \['image'\]") as info:
        run(build_tiny(), [{"kind": "finetune", "steps": 2, "dataset": {"name": "rows.jsonl", "split": "train"}}],
            StepContext(data_dir=tmp_path))
    assert "\n" not in str(info.value)


def test_step_checkpoints_land_in_the_work_dir_and_resume(tmp_path):
    loaded = build_tiny()
    ctx = StepContext(work_dir=tmp_path)
    run(loaded, [{"kind": "finetune", "steps": 4, "checkpoint_every": 2, **FAST}], ctx)
    assert sorted(p.name for p in (tmp_path / "01-finetune").iterdir()) == ["step-0000002", "step-0000004"]
    again = StepContext(work_dir=tmp_path)
    run(build_tiny(), [{"kind": "finetune", "steps": 4, "checkpoint_every": 2, **FAST}], again)
    assert again.records[0]["training"]["resumed_from"] == 4


DISTILL_VARIANTS = """\
- name: base
  steps: []
- name: pool
  steps: [{kind: token-merge, method: avg-pool, factor: 2}]
- name: pool-distill
  steps: [{kind: token-merge, method: avg-pool, factor: 2},
          {kind: distill, steps: 60, lr: 1.0e-3, ce_weight: 0.5, items: 600, eval_items: 50, eval_every: 30}]
- name: pool-distill-hidden
  steps: [{kind: token-merge, method: avg-pool, factor: 2}, {kind: distill, steps: 5, hidden_weight: 1.0}]
"""


@pytest.mark.slow
def test_distill_recipe_on_nano_through_harness_run(tmp_path, nano_dir):
    """`harness run` on nano: distillation recovers accuracy lost to 2x2 pooling, the curve reaches
    result.json and the report, and a hidden-matching shape mismatch is a recorded failed variant."""
    import subprocess
    import sys

    from .runs import make_recipe

    recipe = make_recipe(tmp_path, DISTILL_VARIANTS, suites="[acc-small, size]", name="distill-it")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(recipe), "-o", str(tmp_path / "runs"),
                           "--no-progress"], capture_output=True, text=True, timeout=1800)
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())  # not history.sqlite
    summary = json.loads((run_dir / "results.json").read_text())
    variants = {v["name"]: v for v in summary["variants"]}
    assert variants["pool-distill-hidden"]["status"] == "failed"
    assert "hidden matching needs" in variants["pool-distill-hidden"]["error"]
    score = {n: variants[n]["runtimes"]["torch-eager"]["accuracy"]["acc-small"]["score"]
             for n in ("base", "pool", "pool-distill")}
    print(f"acc-small scores: {score}")
    assert score["pool-distill"] > score["pool"]
    result = json.loads((run_dir / "variants" / "pool-distill" / "result.json").read_text())
    training = result["build"]["training"][0]
    assert training["step"] == "distill" and training["steps"] == 60
    assert [r["step"] for r in training["curve"] if "val_exact_match" in r] == [29, 59]
    assert "training: pool-distill (distill, 60 steps" in (run_dir / "report.html").read_text()
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: a failed variant / missed target


def test_training_chart_shows_loss_and_validation():
    from harness.report import charts

    record = {"step": "distill", "steps": 3, "seconds": 4.0, "tokens_per_s": 120.0,
              "curve": [{"step": 0, "loss": 2.0}, {"step": 1, "loss": 1.5, "val_exact_match": 0.5},
                        {"step": 2, "loss": 1.0}]}
    html = charts.training("pool-distill", record)
    assert "training: pool-distill (distill, 3 steps, 4 s, 120 tok" in html  # plotly escapes the slash
    assert "val exact match" in html and "train loss" in html
