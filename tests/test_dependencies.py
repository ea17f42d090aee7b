"""pyproject.toml declares what the code imports, and nothing it does not.

Every third-party import (module-level, inside functions, and the string given to `require`,
`import_module`, `importorskip` or `find_spec`) of harness/, the shipped suites/, tests/ and
benchmarks/ is mapped to its distribution and must be declared in `dependencies` or an extra;
every core dependency must be imported by the package itself, and every extra's by something,
except the few in NOT_IMPORTED.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from functools import cache
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ("harness", "suites")  # what a user installs (suites/ ships inside the wheel)
SCANNED = (*PACKAGE, "tests", "benchmarks")
DYNAMIC = {"require", "import_module", "importorskip", "find_spec", "__import__"}
# In tests, only these: tests hand `require` made-up names on purpose (tests/test_errors_extras.py).
DYNAMIC_IN_TESTS = {"import_module", "importorskip"}
# Distributions whose import name differs from theirs, for when they are not installed here.
KNOWN_MODULES = {"PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn", "cv2": "opencv-python",
                 "llama_cpp": "llama-cpp-python"}
# Declared on purpose without being imported by our code (keep this short, and say why):
NOT_IMPORTED = {
    "torchvision": "timm imports it; pinned as torch's matched pair",
    "num2words": "transformers' SmolVLMProcessor imports it (a real SmolVLM checkpoint's processor)",
    "cattrs": "a <26 pin for coremltools",
    "accelerate": "INC's GPTQ imports it",
    "pytest-timeout": "a pytest plugin (the timeout option in [tool.pytest.ini_options])",
    "ruff": "the linter, run as a command",
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalize(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip()).group(0))


@cache
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def core() -> set[str]:
    return {requirement_name(r) for r in project()["dependencies"]}


def extras() -> dict[str, set[str]]:
    return {extra: {requirement_name(r) for r in reqs if requirement_name(r) != normalize(project()["name"])}
            for extra, reqs in project()["optional-dependencies"].items()}


def declared() -> set[str]:
    return core().union(*extras().values())


def _local_names() -> set[str]:
    """Our own top-level names: the scanned folders, and the files of script folders (no __init__.py:
    benchmarks/, the lm-eval task folders) that import each other by bare name (`import utils`)."""
    names = set(SCANNED) | {"conftest"}
    for folder in SCANNED:
        for path in (ROOT / folder).rglob("*.py"):
            if not (path.parent / "__init__.py").exists():
                names.add(path.stem)
    return names


def _imported_in(tree: ast.AST, dynamic: set[str] = DYNAMIC) -> set[str]:
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name in dynamic:
                modules.add(node.args[0].value)
    return modules


@cache
def imports() -> dict[str, dict[str, set[str]]]:
    """folder -> third-party top-level module -> files importing it."""
    local, stdlib = _local_names(), set(sys.stdlib_module_names)
    found: dict[str, dict[str, set[str]]] = {}
    for folder in SCANNED:
        found[folder] = {}
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            tree = ast.parse(path.read_text(), str(path))
            for module in _imported_in(tree, DYNAMIC if folder in PACKAGE else DYNAMIC_IN_TESTS):
                top = module.split(".")[0]
                if top and top not in stdlib and top not in local and not top.startswith("_"):
                    found[folder].setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


@cache
def _installed() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


@cache
def distributions(module: str) -> set[str]:
    """The distributions that provide a top-level module (its own name when none is installed here)."""
    installed = _installed().get(module)
    if installed:
        return {normalize(d) for d in installed}
    return {normalize(KNOWN_MODULES.get(module, module))}


def imported_distributions(folders=SCANNED) -> set[str]:
    return {d for folder in folders for module in imports()[folder] for d in distributions(module)}


def test_every_import_is_declared():
    undeclared = {f"{module} ({'/'.join(sorted(distributions(module)))}): {', '.join(sorted(files)[:3])}"
                  for folder in SCANNED for module, files in imports()[folder].items()
                  if not distributions(module) & declared()}
    assert not undeclared, f"imported but declared nowhere in pyproject.toml: {sorted(undeclared)}"


def test_every_core_dependency_is_imported_by_the_package():
    used = imported_distributions(PACKAGE)
    unused = sorted(core() - used - set(NOT_IMPORTED))
    assert not unused, (f"core dependencies that harness/ never imports: {unused} (drop them, move a test-only "
                        "one to the dev extra, or add it to NOT_IMPORTED with the reason)")


def test_every_extra_dependency_is_imported():
    used = imported_distributions()
    unused = {extra: sorted(names - used - set(NOT_IMPORTED)) for extra, names in extras().items() if extra != "all"}
    unused = {extra: names for extra, names in unused.items() if names}
    assert not unused, f"declared in an extra but never imported: {unused}"


# Modules of the package that are optional as a whole: imported only after `require` checked their extra.
OPTIONAL_MODULES = {"harness/lmeval/adapter.py": "eval"}


def test_module_level_imports_of_the_package_are_core():
    """A top-of-file import runs whenever the module is imported, so only a core dependency may be one;
    an extra's module is imported inside the function that needs it (through `require`)."""
    stdlib, local = set(sys.stdlib_module_names), _local_names()
    wrong = []
    for folder in PACKAGE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            allowed = core() | extras().get(OPTIONAL_MODULES.get(path.relative_to(ROOT).as_posix(), ""), set())
            for node in ast.parse(path.read_text(), str(path)).body:
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    modules = [node.module]
                else:
                    continue
                wrong += [f"{path.relative_to(ROOT)}: {m}" for m in modules
                          if (top := m.split(".")[0]) not in stdlib and top not in local
                          and not distributions(top) & allowed]
    assert not wrong, f"module-level imports of optional (or undeclared) dependencies: {wrong}"


def test_not_imported_entries_are_declared_and_really_unimported():
    assert set(NOT_IMPORTED) <= declared()
    assert not set(NOT_IMPORTED) & imported_distributions()


#: Extras left out of `all` on purpose, and why.
NOT_IN_ALL = {"dev": "tools, not runtimes",
              "peers": "the peers benchmark's llama-cpp-python compiles llama.cpp from source at install"}


def test_all_is_every_extra_but_those_left_out():
    (everything,) = project()["optional-dependencies"]["all"]
    named = set(re.search(r"\[(.*)\]", everything).group(1).split(","))
    assert named == set(extras()) - {"all", *NOT_IN_ALL}


def test_test_only_imports_are_in_dev():
    package = imported_distributions(PACKAGE)
    test_only = imported_distributions(("tests", "benchmarks")) - package - core().union(
        *(names for extra, names in extras().items() if extra not in ("all", "dev")))
    assert test_only <= extras()["dev"], f"imported only by tests/benchmarks, not in dev: {test_only - extras()['dev']}"


def test_inc_extra_pulls_intels_torch_dependencies():
    """The bare neural-compressor wheel declares no dependencies ('No module named cpuinfo' on a fresh machine)."""
    assert any(re.match(r"neural-compressor\[pt\]>=3\.10", r) for r in project()["optional-dependencies"]["inc"])


def test_scan_sees_function_level_and_dynamic_imports():
    assert "jinja2" in imports()["harness"]  # imported inside functions only
    assert "neural_compressor" in imports()["harness"]  # only as require("neural_compressor.torch...")
    assert "playwright" in imports()["tests"]  # only through pytest.importorskip
