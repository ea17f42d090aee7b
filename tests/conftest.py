"""Shared fixtures: offline hub, a tiny config-built FastVLM, the shipped nano reference."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def build_tiny(seed: int = 0, vision_args: dict | None = None, text_args: dict | None = None):
    """The harness's tiny config-built `fast_vlm`, with non-trivial BatchNorm weights and statistics
    (so reparameterisation and export tests see real folding)."""
    import torch

    from harness.training.ddp_check import tiny_model

    loaded = tiny_model(seed, vision_args, text_args)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in loaded.model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return loaded


@pytest.fixture
def tiny():
    return build_tiny()


@pytest.fixture(scope="session")
def nano_dir() -> Path:
    from harness.training.nano import ensure_nano

    return ensure_nano(progress=False)


@pytest.fixture(scope="session")
def test_items():
    from harness.data.nano_vqa import load_nano_vqa

    return load_nano_vqa("test")


@pytest.fixture
def images(test_items):
    return test_items.select(range(4))


@pytest.fixture(scope="session")
def first_run(tmp_path_factory, nano_dir):
    """One real run of a four-variant recipe (one crashes on purpose), shared by the tests that read runs."""
    from harness.run.runner import run

    from .runs import VARIANTS, make_recipe

    root = tmp_path_factory.mktemp("pipeline")
    recipe = make_recipe(root, VARIANTS)
    return recipe, run(recipe, output=root / "reports", progress=False)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core box OpenMP spinning costs 10x."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
