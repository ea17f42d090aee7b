"""`require` tells a module that is not installed from one that is installed but fails to import
(e.g. the bare neural-compressor wheel without its `cpuinfo` dependency)."""

from __future__ import annotations

import ast
import pickle
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError, MissingExtraError, require

ROOT = Path(__file__).resolve().parents[1]


def _fake_package(tmp_path: Path, monkeypatch, name: str, init: str) -> None:
    package = tmp_path / name
    (package / "torch").mkdir(parents=True)
    (package / "__init__.py").write_text(init)
    (package / "torch" / "__init__.py").write_text("")
    (package / "torch" / "quantization.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        monkeypatch.delitem(sys.modules, module)


def test_a_module_that_is_not_installed():
    with pytest.raises(MissingExtraError) as err:
        require("no_such_module_xyz", "onnx", "runtime onnxruntime")
    assert str(err.value) == ("runtime onnxruntime needs the Python module 'no_such_module_xyz', which is not "
                              "installed: pip install 'fastvlm-harness[onnx]'")
    assert err.value.detail is None and isinstance(err.value, HarnessError) and err.value.exit_code == 2


def test_a_submodule_of_a_package_that_is_not_installed():
    with pytest.raises(MissingExtraError, match=r"'no_such_pkg_xyz\.torch\.quantization', which is not installed: "
                                                r"pip install 'fastvlm-harness\[inc\]'$"):
        require("no_such_pkg_xyz.torch.quantization", "inc", "step 'weight-quant'")


def test_a_module_blocked_in_sys_modules_counts_as_not_installed(monkeypatch):
    """How the export tests simulate a missing extra."""
    monkeypatch.setitem(sys.modules, "coremltools", None)
    with pytest.raises(MissingExtraError, match="which is not installed"):
        require("coremltools", "coreml", "runtime coreml")


def test_an_installed_module_whose_dependency_is_missing(tmp_path, monkeypatch):
    # As the bare neural-compressor wheel fails on a fresh machine (the message, without `name=`).
    _fake_package(tmp_path, monkeypatch, "fake_inc_xyz", 'raise ModuleNotFoundError("No module named \'cpuinfo\'")\n')
    with pytest.raises(MissingExtraError) as err:
        require("fake_inc_xyz.torch.quantization", "inc", "step 'weight-quant'")
    assert str(err.value) == (
        "step 'weight-quant' needs the Python module 'fake_inc_xyz.torch.quantization', which is installed but "
        "fails to import: ModuleNotFoundError: No module named 'cpuinfo' (a dependency of it is missing or broken); "
        "reinstall with pip install 'fastvlm-harness[inc]'")
    assert "\n" not in str(err.value)
    assert isinstance(err.value.__cause__, ModuleNotFoundError)


def test_an_installed_module_whose_real_import_of_a_dependency_fails(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch, "fake_dep_xyz", "import no_such_dependency_xyz\n")
    with pytest.raises(MissingExtraError, match=r"'fake_dep_xyz', which is installed but fails to import: "
                                                r"ModuleNotFoundError: No module named 'no_such_dependency_xyz' "
                                                r"\(a dependency"):
        require("fake_dep_xyz", "eval", "suite kind lm-eval")


def test_an_installed_module_whose_import_raises_something_else(tmp_path, monkeypatch):
    init = 'raise RuntimeError("compiled against another torch\\nmore")\n'
    _fake_package(tmp_path, monkeypatch, "fake_abi_xyz", init)
    with pytest.raises(MissingExtraError) as err:
        require("fake_abi_xyz", "tflite", "runtime litert")
    assert "which is installed but fails to import: RuntimeError: compiled against another torch (a dependency" \
        in str(err.value)
    assert "\n" not in str(err.value)


def test_an_installed_module_is_returned():
    import json

    assert require("json", "eval", "anything") is json


def test_the_error_survives_pickling():
    """Workers send their errors back to the parent process."""
    for error in (MissingExtraError("onnx", "step x", "onnx"),
                  MissingExtraError("inc", "step y", "nc", "ModuleNotFoundError: No module named 'cpuinfo'")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is MissingExtraError and str(copy) == str(error) and copy.detail == error.detail


def _require_calls() -> list[tuple[str, ast.Call]]:
    calls = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and (getattr(node.func, "id", None) == "require"
                                               or getattr(node.func, "attr", None) == "require"):
                calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", node))
    return calls


def test_every_require_call_names_module_extra_and_feature():
    tomllib = pytest.importorskip("tomllib")
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]) - {"all"}
    calls = _require_calls()
    assert len(calls) >= 10
    wrong = [where for where, call in calls if len(call.args) + len(call.keywords) != 3]
    assert not wrong, f"require(module, extra, feature) called without its three arguments: {wrong}"
    known: set[str] = set()
    unknown = [f"{where}: {call.args[1].value}" for where, call in calls
               if len(call.args) > 1 and isinstance(call.args[1], ast.Constant)
               and call.args[1].value not in extras | known]
    assert not unknown, f"require(...) names an extra pyproject.toml does not declare: {unknown}"
