"""The trainer on tiny config-built models: learning, exact resume, early stop, precision,
gradient checkpointing, divergence and budgets."""

from __future__ import annotations

import pytest

from .conftest import build_tiny


@pytest.fixture(autouse=True, scope="module")
def _single_thread(one_thread):
    """Every test here on one torch thread (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def rows():
    from harness.data.nano_vqa import load_nano_vqa

    return load_nano_vqa("train").select(range(48))


def batcher_for(loaded, rows):
    from harness.training.batches import VQABatcher

    return VQABatcher(loaded.processor, rows)


def config(**overrides):
    from harness.training import TrainConfig

    return TrainConfig(**{"steps": 6, "batch_size": 4, "lr": 3e-3, "warmup": 2, **overrides})


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Failing:
    """Wraps a batcher: raises, or returns NaN, from the `at`-th call on."""

    def __init__(self, inner, at, mode):
        self.inner, self.at, self.mode, self.calls = inner, at, mode, 0

    def __len__(self):
        return len(self.inner)

    def loss(self, model, indices):
        self.calls += 1
        loss = self.inner.loss(model, indices)
        if self.calls > self.at:
            if self.mode == "crash":
                raise KeyboardInterrupt("simulated crash")
            return loss * float("nan")
        return loss


def test_loss_decreases(rows):
    from harness.training import fit

    loaded = build_tiny()
    result = fit(loaded.model, batcher_for(loaded, rows), config(steps=30), progress=False)
    losses = [row["loss"] for row in result.history]
    assert len(losses) == 30
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    assert result.tokens > 0 and result.tokens_per_second > 0
    assert not loaded.model.training


def test_resume_continues_exactly(rows, tmp_path):
    """2N steps straight == N steps, a crash, then resume for the other N (weights and curve)."""
    import torch

    from harness.training import fit, latest_checkpoint

    straight = build_tiny()
    full = fit(straight.model, batcher_for(straight, rows), config(), progress=False)

    interrupted = build_tiny()
    settings = config(checkpoint_dir=str(tmp_path), checkpoint_every=3, resume=True)
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted.model, Failing(batcher_for(interrupted, rows), 4, "crash"), settings, progress=False)
    assert latest_checkpoint(tmp_path).name == "step-0000003"
    resumed = build_tiny()  # a fresh process: fresh model, state comes from the checkpoint
    torch.manual_seed(1234)  # the global RNG is restored from the checkpoint too
    second = fit(resumed.model, batcher_for(resumed, rows), settings, progress=False)
    assert second.resumed_from == 3
    assert [r["loss"] for r in second.history] == [r["loss"] for r in full.history]
    expected, got = weights(straight.model), weights(resumed.model)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_early_stop_on_validation_metric(rows):
    from harness.training import fit

    loaded = build_tiny()
    scores = iter([0.5, 0.6, 0.55, 0.58, 0.59, 0.9, 0.9])
    result = fit(loaded.model, batcher_for(loaded, rows),
                 config(steps=20, eval_every=2, early_stop_metric="score", patience=3),
                 evaluate=lambda step: {"score": next(scores)}, progress=False)
    assert result.stopped == "early-stop"
    assert len(result.history) == 10  # best at the 2nd evaluation, three without gain after it
    assert [r["score"] for r in result.history if "score" in r] == [0.5, 0.6, 0.55, 0.58, 0.59]


def test_bf16_autocast_runs_close_to_fp32(rows):
    from harness.training import fit

    first = {}
    for precision in ("fp32", "bf16"):
        loaded = build_tiny()
        result = fit(loaded.model, batcher_for(loaded, rows), config(steps=2, precision=precision), progress=False)
        first[precision] = result.history[0]["loss"]
    assert first["bf16"] != first["fp32"]  # autocast really ran in bf16
    assert first["bf16"] == pytest.approx(first["fp32"], rel=0.05)


def test_fp16_needs_a_gpu(rows):
    from harness.errors import ConfigError
    from harness.training import fit

    loaded = build_tiny()
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        fit(loaded.model, batcher_for(loaded, rows), config(precision="fp16"), progress=False)


def test_gradient_checkpointing_same_loss_and_recomputes(rows):
    """Checkpointing re-runs each decoder layer's forward in backward; the numbers stay the same."""
    import torch

    from harness.training import fit

    curves, calls, final = {}, {}, {}
    for enabled in (False, True):
        loaded = build_tiny()
        count = [0]
        layer = loaded.model.model.language_model.layers[0].mlp
        handle = layer.register_forward_pre_hook(lambda *_, c=count: c.__setitem__(0, c[0] + 1))
        result = fit(loaded.model, batcher_for(loaded, rows), config(steps=3, gradient_checkpointing=enabled),
                     progress=False)
        handle.remove()
        curves[enabled], calls[enabled] = [r["loss"] for r in result.history], count[0]
        final[enabled] = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
        assert not loaded.model.is_activation_checkpointing  # switched off again after training
    assert calls[True] == 2 * calls[False]
    assert curves[True] == pytest.approx(curves[False], abs=1e-5)
    assert all(torch.allclose(final[True][k], final[False][k], atol=1e-5) for k in final[True])


def test_nan_loss_is_a_typed_error_and_checkpoints_stay(rows, tmp_path):
    from harness.training import TrainingDivergedError, fit

    loaded = build_tiny()
    with pytest.raises(TrainingDivergedError, match="loss became nan at step 4") as info:
        fit(loaded.model, Failing(batcher_for(loaded, rows), 4, "nan"),
            config(checkpoint_dir=str(tmp_path), checkpoint_every=2), progress=False)
    assert info.value.step == 4
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000002", "step-0000004"]


def test_zero_budget_is_a_config_error():
    from pydantic import ValidationError

    from harness.errors import ConfigError
    from harness.registries import STEPS

    with pytest.raises(ConfigError, match="budget of 0 steps trains nothing"):
        config(steps=0)
    with pytest.raises(ConfigError, match="needs a budget"):
        config(steps=None)
    for kind in ("distill", "qat", "finetune"):
        with pytest.raises(ValidationError, match="budget of 0 steps trains nothing"):
            STEPS.get(kind).Config.model_validate({"kind": kind, "steps": 0})
        with pytest.raises(ValidationError, match="needs a budget"):
            STEPS.get(kind).Config.model_validate({"kind": kind})


def test_time_budget_stops(rows):
    from harness.training import fit

    loaded = build_tiny()
    result = fit(loaded.model, batcher_for(loaded, rows), config(steps=None, max_seconds=1e-6), progress=False)
    assert result.stopped == "time" and len(result.history) == 1
