"""The response cache: keys follow every input of a greedy answer, concurrent workers can write,
a rerun reuses answers, --no-cache bypasses, and a broken database costs a warning, not a run."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from harness.suites._response_cache import ResponseCache, response_key

BASE = {"variant": "v1", "runtime": "torch-eager", "suite": "s", "version": 1, "item_id": "i1",
        "prompt": "what color ?", "images": ["abc"], "settings": {"max_new_tokens": 4}}


@pytest.mark.parametrize("change", [{"variant": "v2"}, {"runtime": "onnxruntime"}, {"suite": "t"}, {"version": 2},
                                    {"item_id": "i2"}, {"prompt": "what colour ?"}, {"images": ["abd"]},
                                    {"settings": {"max_new_tokens": 5}}])
def test_key_changes_with_every_input(change):
    assert response_key(**BASE) == response_key(**dict(BASE))
    assert response_key(**{**BASE, **change}) != response_key(**BASE)


def test_image_hash_is_content(tmp_path):
    from PIL import Image

    cache = ResponseCache(tmp_path / "r.sqlite", variant="v")
    red, red2, blue = (Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (255, 0, 0), (0, 0, 255)))
    assert cache.key("1", "q", [red]) == cache.key("1", "q", [red2]) != cache.key("1", "q", [blue])
    # undecoded dataset images: by bytes, or by the file's content when given as a path
    (tmp_path / "a.png").write_bytes(b"png-a")
    assert cache.key("1", "q", [{"bytes": b"png-a", "path": None}]) == cache.key("1", "q", [tmp_path / "a.png"]) \
        == cache.key("1", "q", [{"bytes": None, "path": str(tmp_path / "a.png")}])
    (tmp_path / "a.png").write_bytes(b"png-b")
    assert cache.key("1", "q", [tmp_path / "a.png"]) != cache.key("1", "q", [{"bytes": b"png-a", "path": None}])


def test_a_digest_keys_like_the_image_it_came_from(tmp_path):
    from PIL import Image

    from harness.suites._response_cache import image_hash

    cache = ResponseCache(tmp_path / "r.sqlite", variant="v")
    red = Image.new("RGB", (4, 4), (255, 0, 0))
    assert cache.key_from_digests("1", "q", [image_hash(red)]) == cache.key("1", "q", [red])
    assert cache.key_from_digests("1", "q", [image_hash(red)]) != cache.key("1", "q", [image_hash(red)])


def test_answers_reads_hits_and_computes_misses_in_batches(tmp_path):
    calls = []

    def compute(indices):
        calls.append(list(indices))
        return [f"a{i}" for i in indices]

    first = ResponseCache(tmp_path / "r.sqlite", variant="v")
    keys = [first.key(i, f"q{i}") for i in range(5)]
    assert first.answers(keys[:3], compute, batch_size=2) == ["a0", "a1", "a2"]
    assert calls == [[0, 1], [2]] and first.summary() == {"hits": 3 - 3, "misses": 3}
    calls.clear()
    second = ResponseCache(tmp_path / "r.sqlite", variant="v")
    assert second.answers(keys, compute, batch_size=8) == ["a0", "a1", "a2", "a3", "a4"]
    assert calls == [[3, 4]] and second.summary() == {"hits": 3, "misses": 2}
    off = ResponseCache(tmp_path / "r.sqlite", variant="v", enabled=False)
    assert off.answers([off.key(i, f"q{i}") for i in range(5)], compute, 8) == [f"a{i}" for i in range(5)]
    assert off.summary() == {"hits": 0, "misses": 5, "disabled": True}


def _writer(path: str, worker: int, n: int, start: Any, errors: Any) -> None:
    cache = ResponseCache(__import__("pathlib").Path(path), variant=f"w{worker}")
    start.wait()  # every worker opens the fresh file at the same moment: the race CI once lost
    for begin in range(0, n, 10):
        cache.put_many({cache.key(i, "q"): f"{worker}:{i}" for i in range(begin, begin + 10)})
    errors.put(cache.error)


def _run_writers(path: Path, workers: int, n: int, method: str) -> list[str]:
    ctx = multiprocessing.get_context(method)
    start, errors = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(path), w, n, start, errors)) for w in range(workers)]
    for p in procs:
        p.start()
    reported = [errors.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * workers
    return [e for e in reported if e]


def test_two_processes_write_concurrently(tmp_path):
    path = tmp_path / "responses.sqlite"
    assert _run_writers(path, 2, 300, "spawn") == []
    for worker in range(2):
        cache = ResponseCache(path, variant=f"w{worker}")
        got = cache.get_many([cache.key(i, "q") for i in range(300)])
        assert sorted(got.values()) == sorted(f"{worker}:{i}" for i in range(300))
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_workers_opening_a_fresh_file_together_all_keep_the_cache(tmp_path):
    # SQLite answers the WAL switch with "database is locked" at once (no busy handler) while another
    # connection opens the same new file; before the retry about 1 round in 10 lost a worker's cache.
    errors = [e for r in range(25) for e in _run_writers(tmp_path / f"r{r}.sqlite", 4, 20, "fork")]
    assert errors == []


def test_corrupt_database_is_one_warning_not_a_crash(tmp_path, capsys):
    path = tmp_path / "responses.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    cache = ResponseCache(path, variant="v")
    assert cache.answers([cache.key(1, "q")], lambda idx: ["fresh"], 4) == ["fresh"]
    summary = cache.summary()
    assert summary["misses"] == 1 and "not a database" in summary["error"] and str(path) in summary["error"]
    err = capsys.readouterr().err.strip()
    assert err.startswith("warning: response cache") and "\n" not in err


def test_locked_database_is_one_warning_not_a_crash(tmp_path, monkeypatch, capsys):
    import harness.suites._response_cache as rc

    monkeypatch.setattr(rc, "BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "responses.sqlite"
    ResponseCache(path, variant="v").put_many({"k": "old"})
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock past the timeout
    try:
        cache = ResponseCache(path, variant="v")
        assert cache.answers(["k2"], lambda idx: ["new"], 4) == ["new"]
        assert "locked" in cache.summary()["error"]
    finally:
        holder.execute("ROLLBACK")
    assert "database is locked" in capsys.readouterr().err


def _recipe(tmp_path):
    (tmp_path / "suites").mkdir()
    # a fresh suite name: the shared cache has never seen these keys
    (tmp_path / "suites" / "acc-cache.yaml").write_text(textwrap.dedent(f"""\
        name: acc-cache-{uuid.uuid4().hex[:8]}
        kind: accuracy
        dataset: {{name: nano-vqa, split: test}}
        limit: 24
        batch_size: 24
        max_new_tokens: 4
        """))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: cache\nbase: nano\nbaseline: base\nsuites: [acc-cache]\nvariants:\n"
                      "  - {name: base, steps: []}\n")
    return recipe


def test_worker_rerun_reuses_answers(tmp_path, nano_dir):
    """The worker path of a run, in-process: the second measurement of the same variant reads every
    answer from the cache (identical items, a note for the report); use_cache False generates again."""
    from harness.run.plan import plan_run, resolve_suites, variant_job
    from harness.run.worker import run_variant
    from harness.spec.recipe import load_recipe

    recipe = load_recipe(_recipe(tmp_path))
    suites = resolve_suites(recipe)
    (planned,) = plan_run(recipe, suites, [])

    def measure(use_cache):
        result = run_variant(variant_job(recipe, recipe.variants[0], planned, suites, tmp_path / "run", use_cache))
        return result, next(iter(result["measurements"]["torch-eager"]["suites"].values()))

    _, first = measure(True)
    second_result, second = measure(True)
    _, third = measure(False)
    assert first["cache"] == {"hits": 0, "misses": 24}
    assert second["cache"] == {"hits": 24, "misses": 0}
    assert second["items"] == first["items"] and second["score"] == first["score"]
    assert any("answers from the response cache" in n for n in second_result["build"]["notes"])
    assert third["cache"] == {"hits": 0, "misses": 24, "disabled": True} and third["items"] == first["items"]


def test_cli_no_cache_reaches_the_runner(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import harness.run.runner
    from harness.cli import app
    from harness.errors import ConfigError

    seen = []

    def fake_run(*args, **kwargs):
        seen.append(kwargs["options"].use_cache)
        raise ConfigError("stop here")

    monkeypatch.setattr(harness.run.runner, "run", fake_run)
    for flags, expected in (([], True), (["--no-cache"], False)):
        out = CliRunner().invoke(app, ["run", str(tmp_path / "r.yaml"), *flags])
        assert out.exit_code == 2 and seen[-1] is expected


@pytest.mark.slow
def test_rerun_reuses_answers_and_no_cache_bypasses(tmp_path, nano_dir):
    """Two real `harness run`s of one recipe: the second reads every accuracy answer from the cache
    (identical items, noted in the report); `harness run --no-cache` generates them all again."""
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.run.runner import run

    recipe = _recipe(tmp_path)

    def suite_of(run_dir):
        result = json.loads((run_dir / "variants" / "base" / "result.json").read_text())
        return result, next(iter(result["measurements"]["torch-eager"]["suites"].values()))

    first_result, first = suite_of(run(recipe, output=tmp_path / "a", progress=False))
    second_dir = run(recipe, output=tmp_path / "b", progress=False)
    second_result, second = suite_of(second_dir)
    assert first["cache"] == {"hits": 0, "misses": 24}
    assert second["cache"] == {"hits": 24, "misses": 0}
    assert second["items"] == first["items"] and second["score"] == first["score"]
    assert any("response cache" in n for n in second_result["build"]["notes"])
    assert "answers from the response cache" in (second_dir / "report.html").read_text()

    out = CliRunner().invoke(app, ["run", str(recipe), "-o", str(tmp_path / "c"), "--no-progress", "--no-cache"])
    assert out.exit_code == 0, out.output
    third_dir = next(p for p in (tmp_path / "c").iterdir() if p.is_dir())  # not history.sqlite
    _, third = suite_of(third_dir)
    assert third["cache"] == {"hits": 0, "misses": 24, "disabled": True}
    assert third["items"] == first["items"]
