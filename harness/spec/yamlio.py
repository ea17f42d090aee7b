"""YAML loading that remembers where every value came from, and refuses hostile files fast.

Pydantic reports errors by location path (``variants.2.steps.0.bits``); this module maps such a
path back to ``file:line`` so a user sees exactly which line to fix. A recipe or suite file is a
few KB written by a person, so anything far outside that is refused with one line before it can
cost time or memory: files over `MAX_BYTES`, alias bombs that expand to more than `MAX_VALUES`
values (counted on the node graph, each shared node once), nesting deeper than `MAX_DEPTH`,
duplicate keys (YAML keeps the last one silently: two variants with one name would vanish),
symlink loops and undecodable bytes. The text is parsed once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError

Loc = tuple[str | int, ...]
MAX_BYTES = 1_000_000
MAX_VALUES = 100_000
MAX_DEPTH = 64

#: PyYAML's wording → what to do, for the mistakes people make most.
PLAIN_WORDS = {
    "found character '\\t' that cannot start any token": "a tab character: YAML indents with spaces only",
    "mapping values are not allowed here": "a ':' where no key can start (often a missing space after ':', "
                                          "or a value that needs quotes)",
    "could not find expected ':'": "a key without ':' (or an unclosed quote above it)",
    "found undefined alias": "an alias (*name) with no anchor (&name) defined before it",
    "found unexpected end of stream": "the file ends inside a quoted string or a [list] / {mapping}",
    "did not find expected key": "an item indented differently from its siblings",
    "did not find expected '-' indicator": "a list item indented differently from the others",
}


def _read(path: Path, max_bytes: int) -> str:
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory, expected a YAML file")
        if size > max_bytes:
            raise ConfigError(f"{path}: the file is {size / 1e6:.1f} MB; a recipe or suite file is a few KB "
                              f"(limit {max_bytes / 1e6:.0f} MB) — is this the right file?")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:  # a symlink loop (ELOOP), a permission problem...
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None


def _syntax_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark else str(path)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    plain = next((words for pattern, words in PLAIN_WORDS.items() if problem.startswith(pattern)), problem)
    column = f" at column {mark.column + 1}" if mark else ""
    context = getattr(exc, "context", None)
    detail = f" ({context})" if context and plain == problem else ""
    return ConfigError(f"{where}: malformed YAML{column}: {plain}{detail}; fix the syntax")


def _check_shape(path: Path, root: yaml.Node, max_values: int, max_depth: int) -> None:
    """Count values and depth on the node graph (memoised: a shared alias node counts once per use,
    but is walked once), and find duplicate keys; one line for the first problem."""
    sizes: dict[int, int] = {}

    def visit(node: yaml.Node, depth: int) -> int:
        if depth > max_depth:
            raise ConfigError(f"{path}:{node.start_mark.line + 1}: nested more than {max_depth} levels deep; "
                              "a recipe needs a handful")
        if id(node) in sizes:
            return sizes[id(node)]
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                if name is not None and name in seen:
                    raise ConfigError(f"{path}:{key.start_mark.line + 1}: key '{name}' appears twice in one mapping "
                                      f"(first on line {seen[name]}); YAML would keep only the last — remove or "
                                      "rename one")
                seen[name] = key.start_mark.line + 1
                total += visit(value, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(visit(value, depth + 1) for value in node.value)
        sizes[id(node)] = total
        if total > max_values:
            raise ConfigError(f"{path}: expands to more than {max_values} values (YAML aliases repeating "
                              "blocks); a recipe has a few hundred — write the blocks out, or use a grid")
        return total

    visit(root, 0)


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], seen: set[int]) -> None:
    """Line of every location; a node reached again through an alias is not walked again (its
    locations fall back to the alias's line through `line_of`)."""
    lines[loc] = node.start_mark.line + 1
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*loc, key.value)
            _walk(value, child, lines, seen)
            lines[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, value in enumerate(node.value):
            _walk(value, (*loc, index), lines, seen)


def load_yaml(path: Path, max_bytes: int = MAX_BYTES, max_values: int = MAX_VALUES,
              max_depth: int = MAX_DEPTH) -> tuple[Any, dict[Loc, int]]:
    """Parse a YAML file once; return the data and a map from location path to line number."""
    text = _read(path, max_bytes)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _check_shape(path, node, max_values, max_depth)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _syntax_error(path, exc) from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to parse; a recipe needs a handful of levels") from None
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    _walk(node, (), lines, set())
    return data, lines


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of the deepest known prefix of `loc`."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None
