"""Never hide a failure: every bad input is one line per problem and exit code 2 before anything
runs (nothing written); a run where something was not measured exits 1 and says what; the gate
never passes what was not measured. Exit codes are checked through the installed `harness`
console script, as a user or CI calls it."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HARNESS = Path(sys.executable).parent / "harness"
ROOT = Path(__file__).resolve().parents[1]


def harness(*args: str, cwd: Path, limit_mb: int = 2000, timeout: float = 120) -> subprocess.CompletedProcess:
    """The console script in a child with an address-space cap: a hostile file must not blow up memory."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_mb * 2**20, limit_mb * 2**20))

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(HARNESS), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env, preexec_fn=cap)


def user_error(proc: subprocess.CompletedProcess, *needles: str, lines: int = 1) -> list[str]:
    """Exit 2, no traceback, `lines` lines on stderr each starting with 'error:', the needles in them."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    found = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(found) == lines and all(line.startswith("error: ") for line in found), found
    for needle in needles:
        assert any(needle in line for line in found), (needle, found)
    return found


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


# --- bad input before anything runs ---------------------------------------------------------------
def test_suite_without_data_stops_before_anything_is_written(tmp_path):
    write(tmp_path, "r.yaml", "name: t\nbase: nano\nsuites: [textvqa, size]\n")
    proc = harness("run", "r.yaml", "-o", "out", cwd=tmp_path)
    user_error(proc, "suite 'textvqa'", "lmms-lab/textvqa", "not available offline", "--data-dir")
    assert "network" not in proc.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("base", "needle"), [
    ("apple/FastVLM-0.5B", "is not in the local hub cache"),
    ("./no/such/checkpoint", "does not exist"),
    ("random:fastvlm-9b", "unknown random shape 'fastvlm-9b'"),
])
def test_a_base_model_that_does_not_resolve_is_refused_in_preflight(tmp_path, base, needle):
    write(tmp_path, "r.yaml", f"name: t\nbase: {base}\nsuites: [size]\n")
    user_error(harness("run", "r.yaml", "-o", "out", cwd=tmp_path), "base:", needle)
    assert not (tmp_path / "out").exists()
    user_error(harness("validate", "--deep", "r.yaml", cwd=tmp_path), needle)
    assert harness("validate", "r.yaml", cwd=tmp_path).returncode == 0  # plain validate: the file is fine


def test_grid_placeholder_naming_no_axis(tmp_path):
    write(tmp_path, "r.yaml", """\
        name: t
        grid:
          - name: "res-{sz}"
            axes: {size: [32, 48]}
            steps: [{kind: resolution, size: "{size}"}]
        """)
    user_error(harness("validate", "r.yaml", cwd=tmp_path), "r.yaml:3: grid.0.name", "'{sz}' names no grid axis",
               "did you mean 'size'")


def test_unknown_metric_in_a_suite_file(tmp_path):
    (tmp_path / "suites").mkdir()
    write(tmp_path / "suites", "acc.yaml", "name: acc\nkind: accuracy\ndataset: {name: nano-vqa}\n"
                                           "metric: exact_macth\n")
    write(tmp_path, "r.yaml", "name: t\nsuites: [acc]\n")
    user_error(harness("validate", "r.yaml", cwd=tmp_path), "acc.yaml:4: metric", "did you mean 'exact_match'")


def test_every_problem_of_a_file_at_once_sorted_by_line(tmp_path):
    write(tmp_path, "r.yaml", """\
        name: t
        targets: {min_retention: 95, max_ttf_ms: 3}
        variants:
          - {name: a, steps: [{kind: prune, sparsity: 50}]}
          - {name: b, steps: [{kind: quantize, metod: x}]}
        runtimes: [torch-eagr]
        """)
    found = user_error(harness("validate", "r.yaml", cwd=tmp_path), lines=5)
    assert [line.split(":")[2] for line in found] == ["2", "2", "4", "5", "6"]
    assert "a fraction: did you mean 0.95?" in found[0] and "did you mean 'max_ttft_ms'" in found[1]
    assert "sparsity" in found[2] and "did you mean 0.5?" in found[2]
    assert "did you mean 'method'" in found[3] and "did you mean 'torch-eager'" in found[4]
    as_json = json.loads(harness("validate", "--json", "r.yaml", cwd=tmp_path).stdout)
    assert as_json[0]["ok"] is False and len(as_json[0]["problems"]) == 5


def test_set_overrides_are_validated_like_the_file(tmp_path):
    recipe = str(ROOT / "recipes" / "quickstart.yaml")
    user_error(harness("run", recipe, "--set", "targets.max_ttf_ms=30", "--dry-run", cwd=tmp_path),
               "--set targets.max_ttf_ms=30", "did you mean 'max_ttft_ms'")
    user_error(harness("run", recipe, "--set", "targets.max_ttft_ms=fast", "--dry-run", cwd=tmp_path),
               "--set targets.max_ttft_ms=fast", "valid number")
    proc = harness("run", recipe, "--set", "targets.max_ttft_ms=12.5", "--dry-run", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["recipe"] == "quickstart"


def test_variant_selection_names_a_variant(tmp_path):
    recipe = str(ROOT / "recipes" / "quickstart.yaml")
    user_error(harness("run", recipe, "--variant", "int9-llm", "--dry-run", cwd=tmp_path),
               "no variant 'int9-llm'", "did you mean 'int8-llm'")
    plan = json.loads(harness("run", recipe, "--variant", "int8-llm", "--dry-run", "--json", cwd=tmp_path).stdout)
    assert [v["name"] for v in plan["variants"]] == ["base-fp32", "int8-llm"]  # the baseline comes along


def test_unknown_ls_category_and_json_listing(tmp_path):
    user_error(harness("ls", "steeps", cwd=tmp_path), "unknown category 'steeps'", "did you mean 'steps'")
    listing = json.loads(harness("ls", "suite-kinds", "--json", cwd=tmp_path).stdout)
    assert {"accuracy", "latency", "parity"} <= {k["name"] for k in listing["suite kinds"]}


def test_unwritable_output_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "taken").write_text("a file where the output folder should go")
    proc = harness("run", str(ROOT / "recipes" / "quickstart.yaml"), "-o", "taken/runs", cwd=tmp_path)
    user_error(proc, "output 'taken/runs' cannot be created", "'taken' is a file")


# --- hostile and degenerate files ----------------------------------------------------------------
def _bomb(levels: int = 9) -> str:
    lines = ["name: bomb", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


HOSTILE = {
    "billion-laughs": (_bomb(), "expands to more than 100000 values"),
    "quadratic": ("name: q\na: &a [" + ",".join(['"x"'] * 1000) + "]\nb: [" + ",".join(["*a"] * 1000) + "]\n",
                  "expands to more than 100000 values"),
    "million-grid": ("name: g\ngrid:\n  - name: 'v-{a}-{b}-{c}'\n    axes: {a: [%s], b: [%s], c: [%s]}\n"
                     "    steps: [{kind: cast}]\n" % ((",".join(map(str, range(100))),) * 3),
                     "expands to 1,000,000 variants"),
    "deep-nesting": ("name: d\nx: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
    "nesting-past-the-limit": ("name: d\nx: " + "[" * 70 + "]" * 70 + "\n", "nested more than 64 levels"),
    "duplicate-keys": ("name: d\nvariants:\n  - {name: a, steps: []}\nvariants:\n  - {name: b, steps: []}\n",
                       "key 'variants' appears twice in one mapping (first on line 2)"),
    "negative-sparsity": ("name: n\nvariants:\n  - {name: a, steps: [{kind: prune, sparsity: -0.5}]}\n",
                          "variants.0.steps.0.sparsity"),
    "empty-variants": ("name: e\nvariants: []\n", "omit `variants:` to measure the base model alone"),
    "tab-indent": ("name: t\nvariants:\n\t- {name: a}\n", "a tab character"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_recipe_stops_with_one_line(tmp_path, case):
    text, needle = HOSTILE[case]
    (tmp_path / "r.yaml").write_text(text)
    user_error(harness("validate", "r.yaml", cwd=tmp_path, limit_mb=1500, timeout=60), needle)


def test_huge_file_and_symlink_loop(tmp_path):
    with (tmp_path / "big.yaml").open("w") as handle:
        handle.write("name: big\n# " + "x" * (50 * 2**20) + "\n")
    user_error(harness("validate", "big.yaml", cwd=tmp_path), "the file is 52.4 MB")
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    user_error(harness("validate", "a.yaml", cwd=tmp_path), "cannot be read", "symbolic links")


def test_missing_data_dir_leaves_no_run_folder(tmp_path):
    write(tmp_path, "r.yaml", "name: t\nbase: nano\nsuites: [size]\ndata_dirs: [no-such-folder]\n")
    user_error(harness("run", "r.yaml", "-o", "out", cwd=tmp_path), "data_dirs.0",
               "'no-such-folder' is not a directory")
    assert not (tmp_path / "out").exists()


# --- runs where something was not measured ----------------------------------------------------------
def test_a_run_that_measured_nothing_exits_1_and_the_gate_errors(tmp_path, nano_dir):
    """Every variant fails: the run still finishes its report, exits 1, and lists each failure; the
    gate does not pass it (exit 3: nothing it gates was measured)."""
    write(tmp_path, "r.yaml", """\
        name: all-fail
        base: nano
        baseline: a
        suites: [size]
        variants:
          - {name: a, steps: [{kind: fault, mode: raise}]}
          - {name: b, steps: [{kind: fault, mode: raise}]}
        """)
    proc = harness("run", "r.yaml", "-o", "out", "--no-progress", cwd=tmp_path, limit_mb=8000, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.count("not measured: variant") == 2 and "exit 1:" in proc.stdout
    run_dir = next(p for p in (tmp_path / "out").iterdir() if p.is_dir())  # not history.sqlite
    assert (run_dir / "report.html").exists()
    gate = harness("gate", str(run_dir), "--json", cwd=tmp_path)
    assert gate.returncode == 3
    checks = json.loads(gate.stdout)["checks"]
    assert {c["mark"] for c in checks} == {"ERROR"} and len(checks) == 2


def test_retry_failed_runs_failed_variants_again_and_keeps_their_old_result(tmp_path, nano_dir):
    write(tmp_path, "r.yaml", """\
        name: retry
        base: nano
        suites: [size]
        variants:
          - {name: base, steps: []}
          - {name: crash, steps: [{kind: fault, mode: raise}]}
        """)
    first = harness("run", "r.yaml", "-o", "out", "--no-progress", cwd=tmp_path, limit_mb=8000, timeout=600)
    assert first.returncode == 1 and "not measured: variant crash failed" in first.stdout
    run_dir = next(p for p in (tmp_path / "out").iterdir() if p.is_dir())  # not history.sqlite
    again = harness("run", "--resume", str(run_dir), "--retry-failed", "--no-progress", cwd=tmp_path,
                    limit_mb=8000, timeout=600)
    assert again.returncode == 1 and "base: done earlier" in again.stdout and "crash: FAILED" in again.stdout
    assert (run_dir / "variants" / "crash" / "result.failed-1.json").exists()


def test_limited_run_is_marked_everywhere_and_refused_as_a_baseline(tmp_path, nano_dir):
    proc = harness("run", "quickstart", "--variant", "int8-llm", "--limit", "5", "--set", "suites=[nano-vqa, size]",
                   "-o", "out", "--no-progress", cwd=tmp_path, limit_mb=8000, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "exit 0: everything measured; limited to 5 items" in proc.stdout
    run_dir = next(p for p in (tmp_path / "out").iterdir() if p.is_dir())
    summary = json.loads((run_dir / "results.json").read_text())
    assert summary["limit"] == 5 and [v["name"] for v in summary["variants"]] == ["base-fp32", "int8-llm"]
    assert summary["variants"][1]["runtimes"]["torch-eager"]["accuracy"]["nano-vqa"]["n"] == 5
    assert 'id="limited"' in (run_dir / "report.html").read_text()
    user_error(harness("baseline", "set", "main", str(run_dir), cwd=tmp_path), "--limit 5", "--allow-limited")
    assert harness("baseline", "set", "main", str(run_dir), "--allow-limited", cwd=tmp_path).returncode == 0
