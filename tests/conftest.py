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

    from harness.training.ddp_check import tiny_model

    loaded = tiny_model(seed, vision_args, text_args)
    randomize_batchnorms(loaded.model, seed)
    return loaded


def load_benchmark(name: str):
    """A script of benchmarks/ (no package there) imported as a module, to test its functions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomize_batchnorms(model, seed: int = 0) -> None:
    """Non-default running stats and affine parameters in every BatchNorm2d, so a fold is exercised."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)


def build_tiny_inference_mode(seed: int = 0):
    """The tiny model with its tower in released form (inference mode, ConvFFN BatchNorms unfolded)
    and realistic weights (see harness/models/_random_init.py), BatchNorm stats randomised."""
    from harness.models import nano
    from harness.models.fastvlm import LoadedModel
    from harness.models.shapes import realistic_model
    from harness.training.ddp_check import TINY_TEXT, TINY_VISION

    processor = nano.build_processor()
    config = nano.build_config(processor.tokenizer, vision_args={**TINY_VISION, "inference_mode": True},
                               text_args=TINY_TEXT)
    model = realistic_model(config, seed=seed, calibration_size=nano.IMAGE_SIZE)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    randomize_batchnorms(model, seed)
    return LoadedModel(model=model, processor=processor, source="tiny-inference-mode")


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
