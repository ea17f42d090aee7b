"""The whole FastVLM in mlx-vlm's `fastvlm` layout (`export-mlx` with `vision: mlx`): Apple's names
back from `fast_vlm` ones, an export mlx-vlm loads, the `mlx` runtime running tower, projector and
LLM in MLX with the same features and answers as torch, and the towers it cannot hold refused.

mlx-vlm's FastViTHD dimensions are class constants; the fast tests set them to the tiny Apple-layout
tower's (tests/apple_layout.py) so the real code path runs in seconds; the slow test runs the real
`random:fastvlm-0.5b`."""

from __future__ import annotations

import pytest

from harness.errors import StepError

from . import exports
from .apple_layout import TINY_VISION, source_model, to_apple_key, write_apple_checkpoint

pytest.importorskip("mlx_vlm")

WHOLE = {"kind": "export-mlx", "dtype": "float32", "vision": "mlx"}


@pytest.mark.parametrize("inference_mode", [True, False])
def test_apple_names_are_the_inverse_of_the_conversion(inference_mode):
    from harness.models._apple_mapping import map_keys, to_apple_keys

    model, _ = source_model(inference_mode=inference_mode)
    keys = list(model.state_dict())
    apple = to_apple_keys(keys)
    assert apple == {k: to_apple_key(k, model.config.vision_config.model_args) for k in keys}
    back = map_keys(apple.values())
    assert {back[a]: a for a in back} == {hf: a for hf, a in apple.items()}
    assert any(".convffn.fc1." in a for a in apple.values()) and any(".se.reduce." in a for a in apple.values())


@pytest.fixture()
def tiny_fastvithd(monkeypatch, tmp_path):
    """A converted tiny Apple checkpoint, with mlx-vlm's FastViTHD constants set to its tower."""
    from mlx_vlm.models.fastvlm.config import VisionConfig

    from harness.models.loading import load_model

    for field in ("layers", "embed_dims", "mlp_ratios"):
        monkeypatch.setattr(VisionConfig, field, list(TINY_VISION[field]))
    original, _ = source_model(inference_mode=True)
    return load_model(str(write_apple_checkpoint(original, tmp_path / "apple")))


@pytest.mark.parametrize("steps", [[], [{"kind": "reparameterize"}]], ids=["released", "bn-folded"])
def test_whole_vlm_in_mlx_matches_torch(tiny_fastvithd, tmp_path, steps):
    """Features from mlx-vlm's tower, answers from its LLM: equal to torch's (a folded ConvFFN
    BatchNorm is written back as an identity norm)."""
    import numpy as np
    from PIL import Image

    from harness.runtimes.mlx import Mlx

    loaded, _ = exports.build_artifact(tmp_path / "v", [*steps, WHOLE], WHOLE, tiny_fastvithd)
    manifest = exports.export_manifest(tmp_path / "v", "mlx")
    assert manifest["graphs"] == {"vlm": "vlm"} and manifest["settings"]["vision"] == "mlx"
    assert manifest["settings"]["exporter"].startswith("mlx-vlm fastvlm, float float32")
    assert (tmp_path / "v" / "exports" / "mlx" / "vlm" / "config.json").is_file()
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)) for _ in range(3)]
    questions = ["what colour is the circle ?", "how many shape ?", "what shape is red ?"]
    session = Mlx().load(tmp_path / "v")
    torch_features = loaded.encode_images(images)
    difference = abs(session.encode_images(images) - torch_features).max()
    assert difference < 1e-4 * max(1.0, abs(torch_features).max()), difference
    want = loaded.generate(images, questions, max_new_tokens=4)
    assert session.generate(images, questions, max_new_tokens=4).token_ids == want.token_ids


def test_quantized_whole_vlm_keeps_the_tower_float(tiny_fastvithd, tmp_path):
    import json

    exports.build_artifact(tmp_path / "q", [{**WHOLE, "bits": 8, "group_size": 32}], WHOLE, tiny_fastvithd)
    folder = tmp_path / "q" / "exports" / "mlx" / "vlm"
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization"]["bits"] == 8 and config["quantization"]["group_size"] == 32
    names = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    scales = [n for n in names if n.endswith(".scales")]
    assert scales and not [n for n in scales if n.startswith("vision_tower.")]
    assert any(n.startswith("language_model.") for n in scales)


def test_a_tower_mlx_vlm_cannot_hold_is_one_line(nano_dir, tmp_path):
    from harness.models.loading import load_model

    with pytest.raises(StepError, match=r"vision: mlx .*released FastViTHD only: its layers are \[1, 2, 2\]") as info:
        exports.build_artifact(tmp_path / "n", [WHOLE], WHOLE, load_model("nano"))
    assert "\n" not in str(info.value)


@pytest.mark.slow  # ~5 min: random:fastvlm-0.5b built and exported, its 1024 px image encoded in MLX
@pytest.mark.parametrize("bits", [None, 4])
def test_fastvlm_0p5b_whole_vlm_in_mlx(tmp_path, bits):
    """The real shapes: mlx-vlm's FastViTHD + projector features (1024 px, 256 tokens) and its LLM's
    first-token logits on a 32-token prompt against torch's (MLX's CPU prefill is too slow here for the full
    265-token prompt in a test: docs/limits.md)."""
    import mlx.core as mx
    import numpy as np
    import torch
    from PIL import Image

    from harness.models.loading import load_model
    from harness.runtimes.mlx import mlx_vlm_parts

    step = {**WHOLE, **({"bits": bits, "group_size": 64} if bits else {})}
    loaded, _ = exports.build_artifact(tmp_path / "v", [step], step, load_model("random:fastvlm-0.5b"))
    llm, encode = mlx_vlm_parts(tmp_path / "v" / "exports" / "mlx" / "vlm")
    image = [Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8))]
    pixels = loaded.prepare(image, ["x"])["pixel_values"]
    with torch.inference_mode():
        want = loaded.image_features(pixels).pooler_output.float().numpy()
    got = encode(pixels.numpy())
    relative = float(abs(got - want).max() / abs(want).max())
    feature_cosine = float((got * want).sum() / np.linalg.norm(got) / np.linalg.norm(want))
    ids = torch.randint(0, 150000, (1, 32), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        theirs = loaded.lm_head(loaded.llm(input_ids=ids).last_hidden_state[:, -1]).float().numpy().ravel()
    mine = np.array(llm.language_model(mx.array(ids.numpy())).logits[:, -1].astype(mx.float32)).ravel()
    cosine = float((mine * theirs).sum() / np.linalg.norm(mine) / np.linalg.norm(theirs))
    print(f"\nfastvlm-0.5b whole VLM in mlx-vlm (bits={bits}): {got.shape[1]} visual tokens, features max-rel "
          f"{relative:.2e}, cosine {feature_cosine:.6f}; "
          f"first-token logits max-abs {abs(mine - theirs).max():.3g}, cosine {cosine:.6f}")
    if bits is None:
        assert relative < 1e-4 and cosine > 0.9999
    else:  # the projector and the LLM are 4-bit (mlx-vlm's rule): close, not equal
        assert feature_cosine > 0.9 and cosine > 0.5
