"""The layout's rules, checked on the source: imports run one way (a lower layer never imports a
higher one), there is no import cycle, and only the owner of a file name spells it.

Imports are read with `ast` (function-level imports included: a cycle hidden in a function is
still a cycle), so this needs no third-party tool and imports nothing of the harness.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "harness"

#: Highest first. A module may import modules of its own layer and of every layer after it.
LAYERS: list[tuple[str, ...]] = [
    ("cli",),
    ("search",),
    ("run",),
    ("executors",),
    ("devices",),
    ("deploy",),
    ("report",),
    ("suites",),
    ("lmeval",),
    ("runtimes",),
    ("build",),
    ("steps",),
    ("exporting",),
    ("training",),
    ("models",),
    ("data",),
    ("metrics",),
    ("results",),
    ("spec",),
    # the ground floor: typed errors, the registries, paths, the environment, process isolation
    ("", "errors", "exits", "registry", "registries", "paths", "environment", "sqlite_wal", "isolation", "shipped"),
]

#: File names and the one module allowed to spell each of them.
OWNED_NAMES: dict[str, tuple[str, ...]] = {
    "harness.results.rundir": ("run.json", "recipe.yaml", "recipe.resolved.json", "environment.json", "result.json",
                               "results.json", "report.html", "gate.junit.xml", "worker.log", "worker_result.json",
                               "timings.json", "history.sqlite", "search.journal", "search.json"),
    "harness.build.artifact": ("harness_variant.json",),
    "harness.exporting": ("export.json",),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The harness modules a file imports, anywhere in it; `from pkg import sub` counts as `pkg.sub`."""
    found: set[str] = set()
    package = module_name(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "harness"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "harness":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return {m for m in found if m in known and m != package}


def graph() -> dict[str, set[str]]:
    known = set(modules())
    return {name: imports_of(path, known) for name, path in modules().items()}


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"module {module} is in no declared layer; add its package to LAYERS")


def backward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets if layer_of(b) < layer_of(a))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_module_is_in_a_declared_layer():
    for name in modules():
        layer_of(name)


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    assert backward_imports(graph()) == []


def test_there_is_no_import_cycle():
    assert cycles(graph()) == []


def test_the_checks_catch_what_they_are_for():
    """The two rules above on a made-up graph: a cycle and a backward import are both found."""
    edges = {"harness.results.gate": {"harness.run.runner"}, "harness.run.runner": {"harness.results.gate"}}
    assert backward_imports(edges) == ["harness.results.gate -> harness.run.runner"]
    assert cycles(edges) == [["harness.results.gate", "harness.run.runner"]]


def string_constants(path: Path) -> set[str]:
    """Every string literal of a module but its docstrings (prose may name a file; code may not)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings}


def spells(text: str, name: str) -> bool:
    """`name` as a file name inside `text` (not as the start of a longer name such as report.html.j2)."""
    return re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w.])", text) is not None


@pytest.mark.parametrize("owner", sorted(OWNED_NAMES))
def test_only_the_owner_spells_its_file_names(owner):
    """A run-folder (or artifact, or export) file name written anywhere but its owner is a second
    definition of where things are: it drifts. Other modules use the owner's constants."""
    names = set(OWNED_NAMES[owner])
    offenders = []
    for module, path in modules().items():
        if module == owner:
            continue
        texts = string_constants(path)
        offenders += [f"{module}: {name!r}" for name in sorted(names) if any(spells(text, name) for text in texts)]
    assert offenders == []
    assert names <= {n for t in string_constants(modules()[owner]) for n in names if spells(t, n)}, \
        "the owner must define every name it owns"


def test_the_file_name_check_catches_a_spelled_name():
    assert spells('run_dir / "results.json"', "results.json")
    assert spells("compare-{old}/result.json", "result.json")
    assert not spells("report.html.j2", "report.html") and not spells("results.json", "result.json")


def test_no_package_file_is_git_ignored():
    """A source file that .gitignore swallows works here and is missing from every clone (a `build/`
    pattern once hid harness/build/variant.py): every file of the package must be committable."""
    import shutil
    import subprocess

    root = PACKAGE.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    files = [str(p.relative_to(root)) for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=root, input="\n".join(files),
                             capture_output=True, text=True).stdout.split()
    assert ignored == []
