"""Every bad input gives one clear line and exit code 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_missing_model_path(tmp_path):
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    result = runner.invoke(app, ["reference", "ask", str(image), "hi", "--model", str(tmp_path / "nope")])
    one_line_error(result, "does not exist")


def test_directory_without_config(tmp_path):
    (tmp_path / "img.png").write_bytes(b"")
    from harness.errors import ModelLoadError
    from harness.models.loading import load_model

    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path))


def test_directory_of_another_model_type(tmp_path):
    from harness.errors import ModelLoadError
    from harness.models.loading import load_model

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelLoadError, match="'llama' model, not 'fast_vlm'"):
        load_model(str(tmp_path))


def test_pickle_only_checkpoint_is_refused(tmp_path, nano_dir):
    from harness.errors import ModelLoadError
    from harness.models.loading import load_model

    (tmp_path / "config.json").write_text((nano_dir / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelLoadError, match="pickled"):
        load_model(str(tmp_path))


def test_corrupt_safetensors(tmp_path, nano_dir):
    import shutil

    from harness.errors import ModelLoadError
    from harness.models.loading import load_model

    broken = tmp_path / "broken"
    shutil.copytree(nano_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_model(str(broken))


def test_non_image_file(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture")
    result = runner.invoke(app, ["reference", "ask", str(text), "what color ?"])
    one_line_error(result, "not a readable image")


def test_hub_id_offline_is_explained():
    from harness.errors import ModelLoadError
    from harness.models.loading import load_model

    with pytest.raises(ModelLoadError, match="not in the local hub cache"):
        load_model("apple/FastVLM-0.5B-does-not-exist")


def test_console_script_exit_code_and_single_line(tmp_path):
    """The installed `harness` entry point itself: exit 2, one line on stderr."""
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "validate", str(tmp_path / "none.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "file not found" in proc.stderr


def test_corrupt_history_database(tmp_path):
    (tmp_path / "history.sqlite").write_bytes(b"this is not a database" * 100)
    result = runner.invoke(app, ["history", "--output", str(tmp_path)])
    one_line_error(result, "is unusable")
