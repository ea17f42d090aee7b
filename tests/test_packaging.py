"""A regular wheel carries the suites and recipes (mapped from the top-level `suites/` and
`recipes/` onto `harness._shipped_*`), every module of harness/, and its templates; installed
away from the checkout, `harness.shipped` finds them inside the install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What the build reads. The wheel is built from a copy, so that setuptools' build/ and egg-info
# never land in the checkout (and two runs never share them).
SOURCES = ("pyproject.toml", "README.md", "harness", "suites", "recipes")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """(the copied sources, the wheel, the wheel's file names)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=IGNORED)
        else:
            shutil.copy2(ROOT / name, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(tmp / "dist")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (tmp / "dist").glob("fastvlm_harness-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    return src, wheel, names


def test_wheel_carries_every_suite_and_recipe_file(built):
    src, _, names = built
    suites = _files(src / "suites")
    # The kinds of files the suites need, named so that a silently emptied glob fails here.
    assert "nano-vqa.yaml" in suites
    assert any(f.startswith("_shared/") and f.endswith(".yaml") for f in suites)
    for ext in (".yaml", ".jsonl", ".parquet", ".py"):
        assert any(f.startswith("lm_eval_tasks/") and f.endswith(ext) for f in suites), ext
    missing = [f"suites/{f}" for f in suites if f"harness/_shipped_suites/{f}" not in names]
    recipes = [p.name for p in sorted((src / "recipes").glob("*.yaml"))]
    assert "quickstart.yaml" in recipes
    missing += [f"recipes/{f}" for f in recipes if f"harness/_shipped_recipes/{f}" not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert not [n for n in names if n.endswith(".pyc")]


def test_wheel_carries_every_module_and_data_file_of_harness(built):
    """[tool.setuptools] packages is an explicit list: a new sub-package of harness/ must be added there."""
    src, _, names = built
    missing = [f"harness/{f}" for f in _files(src / "harness") if f"harness/{f}" not in names]
    assert not missing, (f"not in the wheel: {missing}; add the sub-package to [tool.setuptools] packages "
                         "(or its files to package-data) in pyproject.toml")


def test_installed_wheel_finds_its_shipped_folders(built, tmp_path):
    _, wheel, _ = built
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    elsewhere = tmp_path / "elsewhere"  # cwd: no suites/ or checkout to find by accident
    elsewhere.mkdir()
    check = (
        "import sys; from pathlib import Path; import harness, harness.shipped as s\n"
        "site = Path(sys.argv[1]).resolve()\n"
        "assert Path(harness.__file__).resolve().is_relative_to(site), harness.__file__\n"
        "suites, recipes = s.suites_dir(), s.recipes_dir()\n"
        "assert suites.resolve().is_relative_to(site) and recipes.resolve().is_relative_to(site), (suites, recipes)\n"
        "assert (suites / 'nano-vqa.yaml').is_file() and (recipes / 'quickstart.yaml').is_file()\n"
        "assert (suites / 'lm_eval_tasks' / 'nano_vqa' / 'nano_vqa.parquet').is_file()\n"
        "print(suites, recipes)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", check, str(site)], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkout_uses_its_top_level_folders():
    """From the checkout (an editable install, or PYTHONPATH=.), the shipped folders are the checkout's own."""
    import harness
    from harness.shipped import recipes_dir, suites_dir

    assert (suites_dir() / "nano-vqa.yaml").is_file() and (recipes_dir() / "quickstart.yaml").is_file()
    if Path(harness.__file__).resolve().is_relative_to(ROOT):
        assert suites_dir() == ROOT / "suites" and recipes_dir() == ROOT / "recipes"


def test_shipped_imports_nothing_heavy():
    done = subprocess.run([sys.executable, "-c", "import sys, harness.shipped as s; s.suites_dir(); s.recipes_dir(); "
                           "print(' '.join(m for m in ('torch', 'yaml', 'pydantic', 'typer') if m in sys.modules))"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
