"""Cross-model recipes (`models:`): the variants, baselines and retention stay within one model; bad
input is one line each with exit 2; a small recipe of three tiny model families runs end to end
through `harness run` and its results and report carry each variant's model and family."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.spec.recipe import load_recipe

from .runs import SUITES

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "cm.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


CROSS = """\
    name: cm
    models:
      nano: nano
      smol: {model: "random:smolvlm-500m", baseline: smol-int8}
    suites: [size]
    variants:
      - name: int8
        steps: [{kind: quantize, method: dynamic-int8, targets: [llm]}]
      - name: reparam
        model: nano
        steps: [{kind: reparameterize}]
    """


def test_variants_are_of_one_model_each_and_each_model_has_its_own_baseline(tmp_path):
    recipe = load_recipe(write(tmp_path, CROSS))
    got = [(v.name, v.model, len(v.steps), v.gate) for v in recipe.variants]
    # nano's first variant has steps: its uncompressed variant, named after it, is added (not gated);
    # smol names its baseline, which is moved first among smol's variants
    assert got == [("nano", "nano", 0, False), ("nano-int8", "nano", 1, True), ("reparam", "nano", 1, True),
                   ("smol-int8", "smol", 1, True)]
    assert recipe.model_baselines == {"nano": "nano", "smol": "smol-int8"}
    assert recipe.baseline_of("reparam") == "nano" and recipe.baseline_of("smol-int8") == "smol-int8"
    assert recipe.base_of(recipe.variant("smol-int8")).model == "random:smolvlm-500m"
    assert recipe.base_of(recipe.variant("nano-int8")).model == "nano"


def test_a_model_without_variants_is_measured_alone_and_gated(tmp_path):
    recipe = load_recipe(write(tmp_path, """\
        name: cm
        models: {a: nano, b: "random:smolvlm-500m"}
        suites: [size]
        variants: [{name: r, model: a, steps: []}]
        """))
    assert [(v.name, v.model, v.gate) for v in recipe.variants] == [("r", "a", True), ("b", "b", True)]
    assert recipe.baselines == {"r": "r", "b": "b"}


def test_a_base_recipe_is_unchanged():
    """Every shipped recipe without `models:` reads as before: no model on a variant, one baseline."""
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        if recipe.spec.models:
            continue
        assert all(v.model is None for v in recipe.variants), path
        assert recipe.baselines == {} and recipe.baseline_of(recipe.variants[-1].name) == recipe.baseline


def test_the_shipped_cross_model_recipe_validates():
    for name in ("cross-model.yaml", "cross-model-real-size.yaml"):
        result = CliRunner().invoke(app, ["validate", str(ROOT / "recipes" / name)])
        assert result.exit_code == 0, result.output
    recipe = load_recipe(ROOT / "recipes" / "cross-model.yaml")
    assert len(recipe.spec.models) >= 3 and len(set(recipe.model_baselines.values())) == len(recipe.spec.models)


BAD = [
    ("""\
        name: cm
        models: {nano: nano, smol: "random:smolvlm-500m"}
        variants: [{name: x, model: smoll, steps: []}]
        """, ["variants.0.model: unknown model 'smoll' — did you mean 'smol'? (models: nano, smol)"]),
    ("""\
        name: cm
        models: {nano: nano, smol: {model: "random:smolvlm-500m", baseline: nano-int8}}
        variants: [{name: int8, steps: [{kind: quantize, method: dynamic-int8, targets: [llm]}]}]
        """, ["models.smol.baseline: 'nano-int8' is a variant of model 'nano', not of 'smol': retention is measured "
              "against the model's own baseline, never across models or families; name one of smol-int8"]),
    ("""\
        name: cm
        base: nano
        baseline: x
        models: {nano: nano}
        variants: [{name: x, steps: []}]
        """, ["base: give either `base:` (one model) or `models:` (several), not both",
              "baseline: with `models:`, each model names its own baseline"]),
    ("""\
        name: cm
        variants: [{name: x, model: nano, steps: []}]
        """, ["variants.0.model: variant 'x' names model 'nano', but the recipe has no `models:` section"]),
    ("""\
        name: cm
        models: {"bad name": nano}
        """, ["model name 'bad name' is not a valid name"]),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_cross_model_input_is_one_line_each_and_exit_2(tmp_path, text, expected):
    result = CliRunner().invoke(app, ["validate", str(write(tmp_path, text))])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "Traceback" not in result.output
    for piece in expected:
        assert sum(piece in line for line in lines) == 1, (piece, result.output)


def test_preflight_checks_each_models_base_and_family_specific_steps(tmp_path):
    """`reparameterize` (FastVLM's) on a SmolVLM model is refused, naming that model; the same step on
    the FastVLM model of the same recipe passes; a misspelled shape names its model."""
    path = write(tmp_path, """\
        name: cm
        models: {nano: nano, smol: "random:smolvlm-500m", iv: "random:internvl3-1bb"}
        suites: [size]
        variants:
          - {name: reparam, steps: [{kind: reparameterize}]}
        """)
    result = CliRunner().invoke(app, ["validate", "--deep", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    refused = [line for line in lines if "step 'reparameterize' needs" in line]
    assert len(refused) == 1 and "model 'smol' ('random:smolvlm-500m') is a smolvlm model" in refused[0]
    assert "(variants smol-reparam)" in refused[0]
    assert sum("models.iv: unknown random shape 'internvl3-1bb' — did you mean 'internvl3-1b'?" in line
               for line in lines) == 1
    assert not any("nano-reparam" in line for line in lines)


# --- end to end ---------------------------------------------------------------------------------

FAMILIES = ("fastvlm", "smolvlm", "llava_onevision")
SHORT = {"fastvlm": "fv", "smolvlm": "smol", "llava_onevision": "ov"}


@pytest.fixture(scope="module")
def cross_run(tmp_path_factory):
    """Three tiny model families saved as checkpoint directories, one recipe over them: each model's
    baseline plus an INT8 LLM variant, an accuracy, a latency and a size suite, run by `harness run`."""
    import os

    from harness.models.families import family

    root = tmp_path_factory.mktemp("cross")
    models = {}
    for name in FAMILIES:
        tiny = family(name).tiny(seed=3)
        folder = root / "bases" / name
        tiny.model.save_pretrained(folder)
        tiny.processor.save_pretrained(folder)
        models[SHORT[name]] = str(folder)
    (root / "suites").mkdir()
    for suite in ("lat-small", "size"):
        (root / "suites" / f"{suite}.yaml").write_text(textwrap.dedent(SUITES[suite]))
    (root / "suites" / "acc-tiny.yaml").write_text(textwrap.dedent(SUITES["acc-small"]).replace(
        "name: acc-small", "name: acc-tiny").replace("limit: 60", "limit: 12").replace("batch_size: 60",
                                                                                        "batch_size: 12"))
    recipe = root / "cm.yaml"
    entries = "\n".join(f"  {key}: {{model: '{value}'}}" for key, value in models.items())
    recipe.write_text(f"name: cm\nmodels:\n{entries}\nsuites: [acc-tiny, lat-small, size]\n"
                      "targets: {max_size_mb: null, max_peak_memory_mb: null, max_ttft_ms: null, "
                      "min_retention: null}\n"
                      "variants:\n  - {name: int8, steps: [{kind: weight-quant, algorithm: rtn, bits: 8, "
                      "group_size: -1}]}\n")
    before = os.environ.get("FASTVLM_HARNESS_CACHE")
    os.environ["FASTVLM_HARNESS_CACHE"] = str(root / "cache")  # tiny builds never fill the user's cache
    try:
        result = CliRunner().invoke(app, ["run", str(recipe), "-o", str(root / "reports"), "--no-progress"])
    finally:
        if before is None:
            os.environ.pop("FASTVLM_HARNESS_CACHE")
        else:
            os.environ["FASTVLM_HARNESS_CACHE"] = before
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in (root / "reports").iterdir() if p.is_dir()]
    return run_dir


def _read(run_dir: Path, name: str):
    return json.loads((run_dir / name).read_text())


def test_the_run_records_each_variants_model_family_and_baseline(cross_run):
    from harness.results.schema import RunPlan, RunSummary, validate

    plan, summary = _read(cross_run, "run.json"), _read(cross_run, "results.json")
    validate(RunPlan, plan)
    validate(RunSummary, summary)
    expected = {SHORT[f]: f for f in FAMILIES}
    assert plan["baselines"] == {**{m: m for m in expected}, **{f"{m}-int8": m for m in expected}}
    assert summary["baselines"] == plan["baselines"]
    got = {v["name"]: (v["model"], v["family"], v["status"]) for v in summary["variants"]}
    assert got == {name: (name.removesuffix("-int8"), expected[name.removesuffix("-int8")], "ok")
                   for name in plan["baselines"]}


def test_retention_and_paired_ratios_are_within_each_model(cross_run):
    """Each INT8 variant's agreement and TTFT ratio are against its own model's baseline: recomputed
    here from the raw results, they match the summary (against another model's baseline they would
    pair other answers and other rounds)."""
    import numpy as np

    from harness.suites._latency_measure import per_round_ratios

    summary = _read(cross_run, "results.json")
    by_name = {v["name"]: v["runtimes"]["torch-eager"] for v in summary["variants"]}
    for model in SHORT.values():
        mine = _read(cross_run, f"variants/{model}-int8/result.json")["measurements"]["torch-eager"]["suites"]
        base = _read(cross_run, f"variants/{model}/result.json")["measurements"]["torch-eager"]["suites"]
        answers = {i["id"]: i["prediction"] for i in base["acc-tiny"]["items"]}
        agreement = np.mean([answers[i["id"]] == i["prediction"] for i in mine["acc-tiny"]["items"]])
        entry = by_name[f"{model}-int8"]["accuracy"]["acc-tiny"]
        assert entry["agreement"] == pytest.approx(agreement)
        ratios = per_round_ratios(mine["lat-small"], base["lat-small"], "ttft_ms")
        latency = by_name[f"{model}-int8"]["latency"]
        assert ratios and latency["ttft_ratio_to_baseline"] == pytest.approx(float(np.median(ratios)))
        other = next(m for m in SHORT.values() if m != model)  # what pairing across models would have given
        theirs = _read(cross_run, f"variants/{other}/result.json")["measurements"]["torch-eager"]["suites"]
        crossed = per_round_ratios(mine["lat-small"], theirs["lat-small"], "ttft_ms")
        assert float(np.median(crossed)) != pytest.approx(latency["ttft_ratio_to_baseline"])


def test_the_report_groups_variants_by_family_on_one_frontier(cross_run):
    html = (cross_run / "report.html").read_text()
    for family_name in FAMILIES:
        assert f'id="family-torch-eager-{family_name}"' in html
        assert f"family: {family_name}" in html  # the group row and the frontier's legend entry
    rows = html.split('id="variants-torch-eager"')[1].split("</table>")[0]
    order = [rows.index(f'id="family-torch-eager-{f}"') for f in FAMILIES]
    assert order == sorted(order)
    segments = rows.split('<tr class="family"')[1:]  # one per family group, in order
    assert len(segments) == len(FAMILIES)
    for family_name, segment in zip(FAMILIES, segments, strict=True):
        model = SHORT[family_name]
        assert f"<b>{model}</b>" in segment and f"<b>{model}-int8</b>" in segment
        assert f"(baseline of {model})" in segment
        others = [m for m in SHORT.values() if m != model]
        assert not any(f"<b>{m}-int8</b>" in segment for m in others)
    assert "each model&#39;s own" in html or "each model's own" in html
