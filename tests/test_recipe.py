"""Recipe validation: pure data, file:line errors with suggestions, grid expansion, no torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.spec.recipe import json_schema, load_recipe

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_recipe(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_quickstart_is_valid():
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml")
    assert len(recipe.variants) >= 6
    assert recipe.baseline == "base-fp32"


def test_every_shipped_recipe_is_valid():
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        load_recipe(path)


def test_malformed_yaml_names_the_line(tmp_path):
    message = error_of(tmp_path, """\
        name: x
        variants:
          - name: a
            steps: [{kind: cast
        """)
    assert "recipe.yaml:" in message and "malformed YAML" in message


def test_unknown_step_suggests_the_nearest(tmp_path):
    message = error_of(tmp_path, """\
        name: x
        variants:
          - name: a
            steps:
              - kind: quantise
        """)
    assert "recipe.yaml:5" in message
    assert "unknown step 'quantise'" in message and "did you mean 'quantize'" in message


def test_unknown_top_level_key(tmp_path):
    message = error_of(tmp_path, "name: x\nvariantz: []\n")
    assert "recipe.yaml:2" in message and "did you mean 'variants'" in message


def test_unknown_step_field(tmp_path):
    message = error_of(tmp_path, """\
        name: x
        variants:
          - name: a
            steps: [{kind: cast, dtyp: bf16}]
        """)
    assert "unknown field 'dtyp'" in message and "did you mean 'dtype'" in message


def test_wrong_type(tmp_path):
    message = error_of(tmp_path, """\
        name: x
        variants:
          - name: a
            steps: [{kind: resolution, size: big}]
        """)
    assert "variants.0.steps.0.size" in message


def test_component_that_does_not_exist(tmp_path):
    message = error_of(tmp_path, """\
        name: x
        variants:
          - name: a
            steps: [{kind: quantize, targets: [decoder]}]
        """)
    assert "components are vision, projector, llm" in message


def test_unknown_suite_and_runtime(tmp_path):
    assert "did you mean 'latency'" in error_of(tmp_path, "name: x\nsuites: [latncy]\n")
    assert "unknown runtime 'torch-eagre'" in error_of(tmp_path, "name: x\nruntimes: [torch-eagre]\n")


def test_duplicate_variant_names(tmp_path):
    assert "used twice" in error_of(tmp_path, """\
        name: x
        variants:
          - {name: a}
          - {name: a}
        """)


def test_grid_expands_with_typed_values(tmp_path):
    recipe = load_recipe(write(tmp_path, """\
        name: x
        variants: [{name: base}]
        grid:
          - name: "res-{size}"
            axes: {size: [32, 48]}
            steps: [{kind: resolution, size: "{size}"}]
        """))
    assert [v.name for v in recipe.variants] == ["base", "res-32", "res-48"]
    assert recipe.variants[2].steps[0].size == 48


def test_a_baseline_is_added_when_missing(tmp_path):
    recipe = load_recipe(write(tmp_path, "name: x\nvariants: [{name: q, steps: [{kind: cast}]}]\n"))
    assert recipe.variants[0].name == "base" and not recipe.variants[0].steps


def test_validate_imports_no_torch():
    code = ("import sys; from harness.spec.recipe import load_recipe; "
            f"load_recipe({str(ROOT / 'recipes' / 'quickstart.yaml')!r}); "
            "print(sorted(m for m in ('torch', 'transformers', 'onnxruntime', 'coremltools') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_json_schema_lists_every_step():
    from harness.registries import STEPS

    schema = json_schema()
    mapping = schema["$defs"]["VariantSpec"]["properties"]["steps"]["items"]["discriminator"]["mapping"]
    assert set(mapping) == set(STEPS.names())


def test_json_schema_accepts_every_shipped_recipe_and_rejects_bad_ones():
    """The published schema is valid JSON Schema (every $ref resolves) and agrees with the parser."""
    import jsonschema
    import yaml

    validator = jsonschema.Draft202012Validator(json_schema())
    jsonschema.Draft202012Validator.check_schema(validator.schema)
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], (path.name, errors[:3])
    bad = [{"name": "x", "base": 3},
           {"name": "x", "variants": [{"name": "v", "steps": [{"kind": "nope"}]}]},
           {"name": "x", "variants": [{"name": "v", "steps": [{"kind": "prune", "sparsity": "half"}]}]},
           {"name": "x", "targets": {"max_ttf_ms": 3}},
           {"name": "x", "targets": {"min_retention": 95}}]
    for recipe in bad:
        assert list(validator.iter_errors(recipe)), recipe


def test_impossible_step_runtime_pair(tmp_path):
    """A runtime that cannot run what the steps produce is rejected before anything runs."""
    from harness.registries import RUNTIMES

    class OnnxOnly:
        accepts = ("onnx",)

    RUNTIMES.register("onnx-only-test", "test double")(OnnxOnly)
    try:
        message = error_of(tmp_path, """\
            name: x
            runtimes: [onnx-only-test]
            variants:
              - name: a
                steps: [{kind: cast}]
            """)
        assert "no runtime of the recipe can run variant 'a' (torch artifact)" in message
        assert "torch-eager" in message  # names the runtime that would
    finally:
        del RUNTIMES._entries["onnx-only-test"]


def test_published_schema_is_current():
    """docs/recipe.schema.json is what `harness schema` prints (regenerate with `harness schema -o`)."""
    import json

    assert json.loads((ROOT / "docs" / "recipe.schema.json").read_text()) == json_schema()
