"""The shipped benchmark suites, end to end on fixture copies of their datasets (real schemas,
real image bytes), plus suite-file include, lite subsets, the bad-item policy and the offline
messages. Statistics of graded metrics are in test_suite_stats.py."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError, DataError

from .fixture_datasets import image_bytes, write, write_all

SHIPPED = ["textvqa", "vqav2", "vqav2-lite", "docvqa", "infovqa", "chartqa", "ai2d", "scienceqa-img", "mmmu-val",
           "seedbench-img", "pope", "mme", "coco-karpathy"]
GRADED = {"textvqa", "vqav2", "vqav2-lite", "docvqa", "infovqa", "coco-karpathy"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_all(tmp_path_factory.mktemp("benchmarks"))


@pytest.fixture
def with_data(data_dir, monkeypatch) -> Path:
    monkeypatch.setenv("FASTVLM_HARNESS_DATA", str(data_dir))
    return data_dir


def _run_all(root: Path, data_dir: Path, variants: str) -> tuple[Path, dict[str, Any]]:
    """ONE `harness run` of a recipe with every shipped benchmark suite on the nano reference."""
    import os

    from harness.run.runner import run

    recipe = root / "benchmarks.yaml"
    recipe.write_text(f"name: benchmarks\nbase: nano\nbaseline: base\nsuites: [{', '.join(SHIPPED)}]\n"
                      f"variants:\n{textwrap.indent(textwrap.dedent(variants), '  ')}")
    old = os.environ.get("FASTVLM_HARNESS_DATA")
    os.environ["FASTVLM_HARNESS_DATA"] = str(data_dir)  # the spawned workers inherit it
    try:
        run_dir = run(recipe, output=root / "reports", progress=False, use_cache=False)
    finally:
        if old is None:
            os.environ.pop("FASTVLM_HARNESS_DATA")
        else:
            os.environ["FASTVLM_HARNESS_DATA"] = old
    summary = json.loads((run_dir / "results.json").read_text())
    assert {v["status"] for v in summary["variants"]} == {"ok"}, [v.get("error") for v in summary["variants"]]
    return run_dir, summary


def _check_suites(run_dir: Path, summary: dict[str, Any], variant: str) -> dict[str, Any]:
    result = json.loads((run_dir / "variants" / variant / "result.json").read_text())
    suites = result["measurements"]["torch-eager"]["suites"]
    assert not {name: s.get("error") for name, s in suites.items() if s["status"] != "ok"}
    accuracy = next(v for v in summary["variants"] if v["name"] == variant)["runtimes"]["torch-eager"]["accuracy"]
    assert set(accuracy) == set(SHIPPED)
    for name, acc in accuracy.items():
        assert acc["n"] == len(suites[name]["items"]) > 0, name
        assert 0 <= acc["score"] <= 1 or name == "coco-karpathy"
        low, high = acc["ci"]
        assert low <= acc["score"] + 1e-9 and acc["score"] <= high + 1e-9, name  # a real 95 % CI
        assert acc["failed_items"] == 0
        assert acc["binary"] == (name not in GRADED), name
        assert all({"id", "prediction", "score", "references"} <= set(it) for it in suites[name]["items"])
    assert accuracy["seedbench-img"]["n"] == 8  # the 2 video rows are filtered out
    assert accuracy["mmmu-val"]["n"] == 30  # the 3 open questions are filtered out, 30 subjects read
    assert len(accuracy["mmmu-val"]["groups"]) == 30
    assert accuracy["vqav2"]["groups"].keys() == {"yes/no", "number", "other"}
    corpus = {name: acc.get("corpus", {}) for name, acc in accuracy.items()}
    assert {"f1", "precision", "recall", "yes_ratio"} <= set(corpus["pope"])
    assert "perception" in corpus["mme"] and "color.acc_plus" in corpus["mme"]
    assert {"CIDEr", "Bleu_4", "METEOR", "ROUGE_L"} <= set(corpus["coco-karpathy"])
    assert "unparsed" in corpus["ai2d"]
    return accuracy


def test_every_shipped_suite_runs_end_to_end_on_nano(tmp_path, data_dir, nano_dir):
    from harness.results.table import export

    run_dir, summary = _run_all(tmp_path, data_dir, "- name: base\n  steps: []\n")
    _check_suites(run_dir, summary, "base")
    html = (run_dir / "report.html").read_text()
    assert "Accuracy per suite" in html and "f1" in html and "CIDEr" in html
    out = tmp_path / "rows.csv"
    export(summary, out)
    text = out.read_text()
    assert "pope.corpus.f1" in text and "mme.corpus.perception" in text and "coco-karpathy.corpus.CIDEr" in text


@pytest.mark.slow
def test_every_shipped_suite_paired_against_the_base(tmp_path, data_dir, nano_dir):
    """The complete variant: a compressed variant scored against the base item by item on every suite."""
    from harness.results.table import export

    variants = "- name: base\n  steps: []\n- name: int8\n  steps: [{kind: quantize, method: dynamic-int8, " \
               "targets: [llm]}]\n"
    run_dir, summary = _run_all(tmp_path, data_dir, variants)
    accuracy = _check_suites(run_dir, summary, "int8")
    for name, acc in accuracy.items():
        assert acc["n_paired"] == acc["n"]  # paired with the base on the same items
        assert ("wilcoxon" in acc and "mean_diff_ci" in acc) if name in GRADED else "mcnemar" in acc, name
    assert "Wilcoxon" in (run_dir / "report.html").read_text()
    out = tmp_path / "rows.csv"
    export(summary, out)
    assert "textvqa.mean_diff" in out.read_text()


def test_prompts_follow_the_suite_and_nano_vqa_is_unchanged(with_data):
    from harness.spec.suite_files import load_suite
    from harness.suites._items import pick_prompt
    from harness.suites.accuracy import ImageSource, image_columns, prepare, select

    config = load_suite("scienceqa-img")
    from harness.data.sources import load_split

    data = select(config, load_split(config.dataset))
    items = prepare(config, data, "fast_vlm", ImageSource(data, image_columns(config), None))
    with_hint = next(it for it in items if "Context:" in it.prompt)
    assert with_hint.prompt.startswith("Context: a square on black\nwhich colour is the square ?\nA. red\nB. green")
    assert not any(it.prompt.startswith("Context:") for it in items if it.group == "language science")
    assert with_hint.references in (["A"], ["B"], ["C"])  # the int answer index became its letter
    prompt = {"default": "{{ question }} (default)", "llava_qwen2": "{{ question }} (llava)"}
    assert pick_prompt(prompt, "llava_qwen2") == "{{ question }} (llava)"
    assert pick_prompt(prompt, "fast_vlm") == "{{ question }} (default)"
    with pytest.raises(ConfigError, match="no template for model family 'x'"):
        pick_prompt({"fast_vlm": "q"}, "x")
    nano = load_suite("nano-vqa")
    assert nano.prompt is None and nano.new_tokens() == 10
    from harness.data.nano_vqa import build_dataset

    test = build_dataset({"train": 5, "validation": 5, "test": 10})["test"]
    assert [it.prompt for it in prepare(nano, test, "fast_vlm")] == test["question"]  # the question as is


def test_include_merges_and_cycles_fail(tmp_path):
    from harness.spec.suite_files import available, load_suite

    suites = tmp_path / "suites"
    (suites / "_shared").mkdir(parents=True)
    (suites / "_shared" / "gen.yaml").write_text("kind: accuracy\nbatch_size: 4\ngeneration: {max_new_tokens: 9}\n"
                                                 "prompt: {default: 'Q {{ question }}'}\n")
    (suites / "_base.yaml").write_text("include: _shared/gen.yaml\nmetric: anls\nbatch_size: 2\n")
    (suites / "mine.yaml").write_text("name: mine\ninclude: [_base.yaml]\ndataset: {name: nano-vqa}\n"
                                      "generation: {greedy: true}\nbatch_size: 3\n")
    config = load_suite("mine", tmp_path)
    assert (config.metric, config.batch_size, config.new_tokens()) == ("anls", 3, 9)  # deep merge, includer wins
    assert config.prompt == {"default": "Q {{ question }}"}
    assert "mine" in available(tmp_path) and "_base" not in available(tmp_path) and "gen" not in available(tmp_path)
    (suites / "a.yaml").write_text("name: a\ninclude: b\n")
    (suites / "b.yaml").write_text("name: b\ninclude: a.yaml\n")
    with pytest.raises(ConfigError, match=r"include: cycle .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_suite("a", tmp_path)
    (suites / "c.yaml").write_text("name: c\ninclude: missing.yaml\n")
    with pytest.raises(ConfigError, match="include: file 'missing.yaml' not found"):
        load_suite("c", tmp_path)
    (suites / "d.yaml").write_text("name: d\ninclude: [_base.yaml]\ndataset: {name: nano-vqa}\ngeneration: "
                                   "{greedy: false}\n")
    with pytest.raises(ConfigError, match="generation.greedy"):
        load_suite("d", tmp_path)


def test_lite_subset_is_seeded_and_stratified(with_data):
    from harness.data.sources import load_split
    from harness.spec.suite_files import load_suite
    from harness.suites.accuracy import select

    base = load_suite("vqav2")
    full = load_split(base.dataset)

    def lite(seed: int) -> Any:
        lite = {"size": 6, "stratify_by": "answer_type", "seed": seed}
        return select(type(base).model_validate({**base.model_dump(), "lite": lite}), full)

    one, again, other = lite(0), lite(0), lite(1)
    assert one["question_id"] == again["question_id"] and len(one) == 6
    assert sorted(one["answer_type"]) == ["number", "number", "other", "other", "yes/no", "yes/no"]
    assert one["question_id"] != other["question_id"]
    shipped = select(load_suite("vqav2-lite"), full)
    assert len(shipped) == len(full)  # 2,000 > the 12 fixture rows: all of them


def _bad_dataset(root: Path) -> None:
    rows = {"question_id": ["q0", "q1", "q2", "q3", "q4"], "question": ["what colour ?"] * 5,
            "answers": [["red"] * 10, [""] * 10, ["red"] * 10, ["blue"] * 10, ["red"] * 10],
            "image": [{"bytes": image_bytes(0), "path": None}, {"bytes": image_bytes(1), "path": None},
                      {"bytes": b"\x89PNG not really", "path": None}, {"bytes": image_bytes(3), "path": None},
                      {"bytes": image_bytes(4), "path": None}]}
    import datasets

    write(root, "me/bad", "validation", rows, {"question_id": datasets.Value("string"),
                                                "question": datasets.Value("string"),
                                                "answers": datasets.Sequence(datasets.Value("string")),
                                                "image": datasets.Image()})
    write(root, "me/typed", "validation", {"question": ["q"] * 2, "answer": [3, 4], "image": rows["image"][:2]},
          {"question": datasets.Value("string"), "answer": datasets.Value("int32"), "image": datasets.Image()})


class FakeSession:
    def generate(self, images: list, questions: list[str], max_new_tokens: int = 8) -> Any:
        from types import SimpleNamespace

        assert all(img.mode == "RGB" for img in images)
        return SimpleNamespace(texts=["red"] * len(images), token_ids=[[1]] * len(images))


def _run(config: Any, tmp_path: Path) -> dict[str, Any]:
    from harness.suites._context import SuiteContext
    from harness.suites.accuracy import Accuracy

    ctx = SuiteContext(runtime_name="fake", runtime=None, artifact=tmp_path, work_dir=tmp_path)
    ctx.adopt(FakeSession())
    return Accuracy().run(config, ctx)


def test_bad_items_fail_with_one_line_or_are_recorded(tmp_path, monkeypatch):
    from harness.suites.accuracy import AccuracyConfig

    _bad_dataset(tmp_path)
    monkeypatch.setenv("FASTVLM_HARNESS_DATA", str(tmp_path))
    spec = {"name": "bad", "dataset": {"name": "me/bad", "split": "validation"}, "metric": "textvqa_accuracy",
            "id_column": "question_id", "answer_column": "answers"}
    with pytest.raises(DataError, match=r"item 'q1' field 'answers': empty answer") as err:
        _run(AccuracyConfig.model_validate(spec), tmp_path)
    assert "\n" not in str(err.value)
    result = _run(AccuracyConfig.model_validate({**spec, "on_bad_item": "record"}), tmp_path)
    assert result["failed_items"] == 2 and result["n"] == 5  # counted, not dropped
    failed = {it["id"]: it["failed"] for it in result["items"] if "failed" in it}
    assert failed.keys() == {"q1", "q2"} and "does not decode" in failed["q2"]
    assert result["score"] == pytest.approx(2 / 5)  # q0, q4 right; q3 wrong; the failed two score 0
    typed = {"name": "typed", "dataset": {"name": "me/typed", "split": "validation"}}
    with pytest.raises(DataError, match=r"item '0' field 'answer': expected text, got int 3"):
        _run(AccuracyConfig.model_validate(typed), tmp_path)


def test_missing_column_and_dataset_and_split_are_one_clear_line(with_data, tmp_path):
    from harness.data.sources import DatasetSpec, load_split
    from harness.suites.accuracy import AccuracyConfig

    config = AccuracyConfig.model_validate({"name": "x", "dataset": {"name": "lmms-lab/ChartQA"},
                                            "answer_column": "label"})
    with pytest.raises(DataError, match=r"dataset lmms-lab/ChartQA, split test has no column 'label' \(columns: type"):
        _run(config, tmp_path)
    with pytest.raises(DataError) as err:
        load_split(DatasetSpec(name="lmms-lab/ChartQA", split="val"))
    assert "no split 'val'" in str(err.value) and "splits there: test" in str(err.value)
    with pytest.raises(DataError) as err:
        load_split(DatasetSpec(name="lmms-lab/OCRBench", config="default", split="test"))
    message = str(err.value)
    assert "\n" not in message and "lmms-lab/OCRBench (config default), split test, is not available offline" in message
    assert str(with_data / "lmms-lab/OCRBench/default") in message and "hub cache" in message
    assert "lmms-lab/OCRBench/default/test-*.parquet" in message and "--data-dir" in message
    assert "network" not in message
    with pytest.raises(DataError, match="no folder for config 'Nope'"):
        load_split(DatasetSpec(name="MMMU/MMMU", configs=["Art", "Nope"], split="validation"))


def test_data_dir_option_sets_the_search_path(with_data, tmp_path, monkeypatch):
    from harness.data.sources import DATA_ENV, append_data_dirs, data_dirs, use_data_dirs

    monkeypatch.setenv(DATA_ENV, str(with_data))
    use_data_dirs([tmp_path])
    assert data_dirs() == [tmp_path.resolve(), with_data.resolve()]
    with pytest.raises(DataError, match="is not a directory"):
        use_data_dirs([tmp_path / "nope"])
    (tmp_path / "recipe-data").mkdir()
    append_data_dirs(["recipe-data"], tmp_path)  # a recipe's data_dirs: relative to it, searched last
    assert data_dirs()[-1] == (tmp_path / "recipe-data").resolve() and data_dirs()[0] == tmp_path.resolve()
    from harness.spec.recipe import RecipeSpec

    assert RecipeSpec.model_validate({"name": "r", "data_dirs": ["recipe-data"]}).data_dirs == ["recipe-data"]


@pytest.mark.parametrize("value,reason", [(None, "no image"), ({"bytes": None, "path": None}, "empty image"),
                                          ({"bytes": b"junk", "path": None}, "does not decode"),
                                          ("missing.jpg", "does not exist")])
def test_decode_image_reasons(value, reason, tmp_path):
    from harness.data.images import decode_image

    with pytest.raises(ValueError, match=reason):
        decode_image(value, tmp_path)
    assert decode_image([None, {"bytes": image_bytes(1), "path": None}]).size == (40, 40)
