"""`harness search`: the `search:` section is validated like a recipe (file:line, one line each);
trials are Optuna's, each a variant of one run folder in the store, report and gate; hopeless
trials stop on a lite subset by an exact binomial bound; a killed search resumes without redoing
finished trials; a changed space is refused on resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.errors import ConfigError
from harness.search import lite
from harness.search.space import space_difference, suggest_steps, trial_name
from harness.search.study import UNDECIDED_VIOLATION, constraint_values, feasible
from harness.spec.recipe import load_recipe

from .runs import make_recipe

optuna = pytest.importorskip("optuna")

TARGETS = "{max_size_mb: 100, max_ttft_ms: null, max_peak_memory_mb: null, min_retention: 0.9}"
SEARCH = """\
search:
  sampler: random
  objectives: [accuracy, size_mb]
  n_trials: {n}
  seed: 0
  early_stop: {{items: 40}}
  space:
    - slot: quant
      kinds:
        none:
        quantize: {{method: dynamic-int8, targets: {{choices: [[llm], [vision, projector, llm]]}}}}
        weight-quant: {{bits: {{choices: [4, 8]}}, group_size: 32}}
    - slot: res
      kinds:
        none:
        resolution: {{size: 32}}
"""


def _recipe(root: Path, n: int = 3) -> Path:
    path = make_recipe(root, "- name: base\n  steps: []\n  gate: false\n", suites="[acc-small, size]",
                       name="srch", targets=TARGETS)
    path.write_text(path.read_text() + SEARCH.format(n=n))
    return path


def _problems(text: str, folder: Path) -> list[str]:
    path = folder / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_recipe(path)
    return str(info.value).splitlines()


BASE = "name: r\nbase: nano\nsearch:\n  n_trials: 4\n"


@pytest.mark.parametrize(("space", "says"), [
    ("  space: []\n", "r.yaml:5: search.space: the space is empty"),
    ("  space:\n    - slot: a\n      kinds: {cast: {dtype: bf16}}\n", "search.space: the space has a single point"),
    ("  space:\n    - slot: a\n      kinds:\n        prune: {sparsity: {float: [0.6, 0.2]}}\n",
     "r.yaml:8: search.space.0.kinds.prune.sparsity: the range [0.6, 0.2] is empty: low is above high"),
    ("  space:\n    - slot: a\n      kinds:\n        weight-quant: {bits: {choices: [4, 3]}}\n",
     "r.yaml:8: search.space.0.kinds.weight-quant.bits: Input should be 4 or 8"),
    ("  space:\n    - slot: a\n      kinds:\n        none:\n        weight-quant: {bitz: {choices: [4, 8]}}\n",
     "r.yaml:9: search.space.0.kinds.weight-quant.bitz: unknown field 'bitz' for step 'weight-quant'"),
    ("  space:\n    - slot: a\n      kinds:\n        none:\n        quantise: {}\n",
     "r.yaml:9: search.space.0.kinds.quantise: unknown step 'quantise' — did you mean 'quantize'?"),
    ("  space:\n    - slot: a\n      kinds:\n        prune: {sparsity: {choices: []}}\n", "choices: is empty"),
    ("  space:\n    - slot: a\n      kinds:\n        prune: {sparsity: {choices: [0.5], float: [0.1, 0.2]}}\n",
     "give exactly one of choices:, int: [low, high] or float: [low, high]"),
    ("  objectives: [accuracy, ttft]\n  space:\n    - slot: a\n      kinds: {none: , cast: {}}\n",
     "r.yaml:5: search.objectives.1: unknown objective 'ttft' — did you mean 'ttft_ms'?"),
])
def test_bad_search_spaces_are_one_line_each_at_their_line(space, says, tmp_path):
    problems = _problems(BASE + space, tmp_path)
    assert any(says in line for line in problems), problems


def test_a_trial_budget_of_zero_is_one_line_and_exit_2(tmp_path):
    recipe = _recipe(tmp_path)
    recipe.write_text(recipe.read_text().replace("n_trials: 3", "n_trials: 0"))
    out = CliRunner().invoke(app, ["search", str(recipe), "-o", str(tmp_path / "out")])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "search.n_trials: Input should be greater than 0" in out.output
    assert len(out.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_recipe_without_a_search_section_is_refused(tmp_path):
    recipe = make_recipe(tmp_path, "- name: base\n  steps: []\n", suites="[size]")
    out = CliRunner().invoke(app, ["search", str(recipe), "-o", str(tmp_path / "out")])
    assert out.exit_code == 2 and "the recipe has no `search:` section" in out.output
    assert not (tmp_path / "out").exists()


def test_an_unreachable_ray_address_starts_nothing(tmp_path):
    pytest.importorskip("ray")
    from .test_executors import _closed_port

    port = _closed_port()
    out = CliRunner().invoke(app, ["search", str(_recipe(tmp_path)), "-o", str(tmp_path / "out"),
                                   "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"])
    assert out.exit_code == 2 and f"nothing answers at 127.0.0.1:{port}" in out.output
    assert len(out.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_steps_are_sampled_per_slot_with_conditional_parameters_and_named_by_them(tmp_path):
    spec = load_recipe(_recipe(tmp_path)).spec.search
    trial = optuna.trial.FixedTrial({"quant": "quantize", "quant.quantize.targets": '["vision", "projector", "llm"]',
                                     "res": "resolution"})
    steps = suggest_steps(trial, spec.space)
    assert steps == [{"kind": "quantize", "method": "dynamic-int8", "targets": ["vision", "projector", "llm"]},
                     {"kind": "resolution", "size": 32}]
    params = {"quant": "quantize", "quant.quantize.targets": '["vision", "projector", "llm"]', "res": "resolution"}
    assert trial_name(7, params, spec.space) == "t007+quantize_targetsvision-projector-llm+resolution"
    assert trial_name(3, {"quant": "none", "res": "none"}, spec.space) == "t003+none"
    skipped = suggest_steps(optuna.trial.FixedTrial({"quant": "none", "res": "none"}), spec.space)
    assert skipped == []  # 'none' skips its slot, and a skipped kind's parameters are never sampled


def test_a_changed_space_is_named_in_words():
    old = [{"slot": "q", "kinds": {"none": {}, "weight-quant": {"bits": {"choices": [4, 8]}}}}]
    new = [{"slot": "q", "kinds": {"none": {}, "weight-quant": {"bits": {"choices": [4]}}}}]
    assert space_difference(old, old) is None
    assert space_difference(old, new) == 'search.space.q.weight-quant.bits was {"choices": [4, 8]} and is now ' \
                                         '{"choices": [4]}'
    assert "the kinds were none, weight-quant and are now none" in space_difference(
        old, [{"slot": "q", "kinds": {"none": {}}}])


def test_the_lite_rule_is_the_exact_one_sided_clopper_pearson_bound():
    from scipy.stats import beta

    verdict = lite.judge(107, 120, baseline_accuracy=0.9933, min_retention=0.95, confidence=0.95)
    # Clopper-Pearson's one-sided upper bound is the Beta(k + 1, n - k) quantile at the confidence
    assert verdict.upper == pytest.approx(beta.ppf(0.95, 108, 13), rel=1e-9)
    assert verdict.needed == pytest.approx(0.9933 * 0.95)
    assert verdict.upper == pytest.approx(0.935, abs=1e-3) and verdict.stop  # 0.935 < 0.944
    assert not lite.judge(112, 120, 0.9933, 0.95, 0.95).stop  # upper 0.960 >= 0.944
    assert lite.judge(120, 120, 0.9933, 0.95, 0.95).upper == 1.0


def test_constraints_are_relative_violations_and_undecided_is_infeasible():
    targets = {"max_size_mb": {"status": "pass", "value": 50.0, "limit": 100.0},
               "min_retention": {"status": "fail", "value": 0.9, "limit": 0.95},
               "max_ttft_ms": {"status": "undecided", "value": 19.0, "limit": 20.0},
               "max_peak_memory_mb": {"status": "not measured", "limit": 500.0}}
    found = constraint_values(targets)
    assert found["max_size_mb"] == pytest.approx(-0.5)
    assert found["min_retention"] == pytest.approx(0.05 / 0.95)
    assert found["max_ttft_ms"] == found["max_peak_memory_mb"] == UNDECIDED_VIOLATION
    assert not feasible(found) and feasible({"max_size_mb": -0.5}) and feasible({})


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "search.json").read_text())


def test_a_search_runs_trials_as_variants_stops_hopeless_ones_and_gates_the_frontier(tmp_path, nano_dir):
    from harness.results.gate import gate
    from harness.run.runner import RunOptions
    from harness.search.driver import SearchOptions, search

    run_dir = search(_recipe(tmp_path, n=4), SearchOptions(run=RunOptions(output=tmp_path / "out", progress=False)))
    record = _record(run_dir)
    assert len([t for t in record["trials"] if t["repeat_of"] is None]) == 4  # the budget: repeats are free
    for trial in record["trials"]:  # a point sampled again is answered from the trial that measured it
        if trial["repeat_of"] is not None:
            earlier = record["trials"][trial["repeat_of"]]
            assert (trial["params"], trial["values"], trial["state"], trial["variant"]) == \
                (earlier["params"], earlier["values"], earlier["state"], earlier["variant"])
    assert {t["state"] for t in record["trials"]} <= {"COMPLETE", "PRUNED"}
    summary = json.loads((run_dir / "results.json").read_text())
    variants = {v["name"]: v for v in summary["variants"]}
    for trial in record["trials"]:
        if trial["state"] == "PRUNED":  # stopped on the lite subset: recorded, not a variant
            assert trial["lite"]["upper"] < trial["lite"]["needed"] and trial["variant"] not in variants
            assert (run_dir / "variants" / trial["variant"] / "lite" / "worker.log").exists()
        else:  # a variant like any other, scored on the full suite, named by its parameters
            entry = variants[trial["variant"]]
            accuracy = entry["runtimes"]["torch-eager"]["accuracy"]["acc-small"]["score"]
            assert trial["values"]["accuracy"] == accuracy and trial["lite"]["upper"] >= trial["lite"]["needed"]
            assert entry["gate"] == (trial["variant"] in record["gated"])
    assert any(t["state"] == "PRUNED" for t in record["trials"]), "resolution 32 keeps ~0.4 of nano's accuracy"
    assert record["frontier"] and set(record["frontier"]) <= {t["variant"] for t in record["trials"] if t["feasible"]}
    code, checks, _ = gate(run_dir)
    assert code == 0 and {c.variant for c in checks} == set(record["gated"])
    html = (run_dir / "report.html").read_text()
    assert 'id="search-trials"' in html and record["frontier"][0] in html and "stopped early" in html


def test_a_killed_search_resumes_without_redoing_finished_trials(tmp_path, nano_dir, monkeypatch):
    from harness.run.runner import RunOptions
    from harness.search import trials
    from harness.search.driver import SearchOptions, search

    told = []
    real_tell = trials.tell

    def tell_then_die(state, trial, entry):
        if told:  # the second trial that reaches its tell: killed before Optuna hears of it
            raise KeyboardInterrupt
        told.append(trial.number)
        real_tell(state, trial, entry)

    monkeypatch.setattr(trials, "tell", tell_then_die)
    recipe = _recipe(tmp_path, n=4)
    recipe.write_text(recipe.read_text().replace("resolution: {size: 32}", "cast: {dtype: bf16}")
                      .replace("  early_stop: {items: 40}\n", ""))
    options = SearchOptions(run=RunOptions(output=tmp_path / "out", progress=False))
    with pytest.raises(KeyboardInterrupt):
        search(recipe, options)
    run_dir = next(p for p in (tmp_path / "out").iterdir() if p.is_dir())
    first = json.loads((run_dir / "run.json").read_text())["variants"][1]
    finished = (run_dir / "variants" / first / "result.json").stat().st_mtime_ns
    monkeypatch.setattr(trials, "tell", real_tell)
    search(None, options, resume=run_dir)
    record = _record(run_dir)
    states = [t["state"] for t in record["trials"] if t["repeat_of"] is None]
    assert states.count("INTERRUPTED") == 1 and states.count("COMPLETE") == 4
    killed = next(t for t in record["trials"] if t["state"] == "INTERRUPTED")
    again = record["trials"][killed["number"] + 1]
    assert again["params"] == killed["params"]  # the interrupted point is measured, once, by the next trial
    assert (run_dir / "variants" / first / "result.json").stat().st_mtime_ns == finished  # not redone
    assert (run_dir / "variants" / f"{killed['variant']}.interrupted").is_dir()
    assert killed["variant"] not in json.loads((run_dir / "run.json").read_text())["variants"]


def test_resuming_a_search_whose_space_changed_names_the_difference(tmp_path, nano_dir):
    from harness.run.runner import RunOptions
    from harness.search.driver import SearchOptions, begin, directions
    from harness.search.study import open_study

    recipe = _recipe(tmp_path)
    run, _, _, spec = begin(recipe, SearchOptions(run=RunOptions(output=tmp_path / "out", progress=False)))
    open_study(run.search_storage, spec, directions(spec), create=True)
    recipe.write_text(recipe.read_text().replace("bits: {choices: [4, 8]}", "bits: {choices: [4]}"))
    out = CliRunner().invoke(app, ["search", "--resume", str(run.path)])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "the search changed since this run began: search.space.quant.weight-quant.bits was " \
           '{"choices": [4, 8]} and is now {"choices": [4]}' in out.output
    assert len(out.output.strip().splitlines()) == 1


def test_a_trial_that_crashes_is_a_failed_variant_and_the_exit_code_says_so(tmp_path, nano_dir):
    recipe = make_recipe(tmp_path, "- name: base\n  steps: []\n  gate: false\n", suites="[acc-small, size]",
                         name="crashy", targets=TARGETS)
    recipe.write_text(recipe.read_text() + "search:\n  sampler: random\n  objectives: [accuracy, size_mb]\n"
                      "  n_trials: 2\n  early_stop: {items: 40}\n  space:\n    - slot: f\n      kinds:\n"
                      "        none:\n        fault: {mode: abort}\n")
    out = CliRunner().invoke(app, ["search", str(recipe), "-o", str(tmp_path / "out"), "--no-progress"])
    assert out.exit_code == 1, out.output
    run_dir = next(p for p in (tmp_path / "out").iterdir() if p.is_dir())
    crashed = next(t for t in _record(run_dir)["trials"] if t["state"] == "FAIL")
    assert crashed["reason"].startswith("lite subset:")
    variants = {v["name"]: v for v in json.loads((run_dir / "results.json").read_text())["variants"]}
    assert variants[crashed["variant"]]["status"] == "failed"
    assert "not measured:" in out.output and crashed["variant"] in out.output
