"""The lm-eval adapter and the `lm-eval` suite kind: log-likelihoods equal a direct torch
computation, generation honours until/max tokens, local tasks run through lm-eval, and a recipe
with an lm-eval suite lands its score in results.json and the report."""

from __future__ import annotations

import json
import textwrap

import pytest

pytest.importorskip("lm_eval")


def _request(kind, args, task="t", doc_id=0):
    from lm_eval.api.instance import Instance

    return Instance(request_type=kind, doc={}, arguments=args, idx=0, metadata=(task, doc_id, 1))


@pytest.fixture(scope="module")
def tiny_lm():
    from harness.lmeval.adapter import HarnessLM

    from .conftest import build_tiny

    return HarnessLM(session=build_tiny(), batch_size=4)


def _direct_loglik(loaded, context_ids, continuation_ids, **extra):
    """Sum of log p(continuation | context) straight from the model's forward pass."""
    import torch

    ids = torch.tensor([context_ids + continuation_ids])
    with torch.inference_mode():
        logits = loaded.model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits[0].float()
    logprobs = torch.log_softmax(logits, -1)
    start = len(context_ids)
    return sum(float(logprobs[start - 1 + i, tok]) for i, tok in enumerate(continuation_ids)), logprobs, start


def test_loglikelihood_text_equals_direct_torch(tiny_lm):
    tok = tiny_lm.tokenizer
    requests = [("what color is the circle ?", " red"), ("how many objects", " are there ?"),
                ("", "which shape is blue ?")]
    got = tiny_lm.loglikelihood([_request("loglikelihood", r) for r in requests])
    for (context, continuation), (value, greedy) in zip(requests, got):
        ctx = tok(context, add_special_tokens=False).input_ids or [tok.eos_token_id]
        cont = tok(continuation, add_special_tokens=False).input_ids
        expected, logprobs, start = _direct_loglik(tiny_lm.session, ctx, cont)
        assert value == pytest.approx(expected, abs=1e-4)
        assert greedy == all(int(logprobs[start - 1 + i].argmax()) == t for i, t in enumerate(cont))
    # a batch mixing lengths (right padding) gives the same values as one request at a time
    alone = [tiny_lm.loglikelihood([_request("loglikelihood", r)])[0][0] for r in requests]
    assert [v for v, _ in got] == pytest.approx(alone, abs=1e-4)


def test_loglikelihood_image_equals_direct_torch(tiny_lm, images):
    from harness.models.fastvlm import chat_prompts

    session = tiny_lm.session
    rows = images.select(range(2))
    requests = [(q, "red", {"visual": [img]}) for q, img in zip(rows["question"], rows["image"])]
    got = tiny_lm.loglikelihood([_request("loglikelihood", r) for r in requests])
    for (question, continuation, extra), (value, _) in zip(requests, got):
        inputs = session.processor(images=[extra["visual"][0].convert("RGB")],
                                   text=[chat_prompts(session.processor, [question])[0]], return_tensors="pt")
        cont = session.processor.tokenizer(continuation, add_special_tokens=False).input_ids
        expected, _, _ = _direct_loglik(session, inputs["input_ids"][0].tolist(), cont,
                                        pixel_values=inputs["pixel_values"])
        assert value == pytest.approx(expected, abs=1e-4)
    # the image matters: the same text without it scores differently
    text_only = tiny_lm.loglikelihood([_request("loglikelihood", (requests[0][0], "red"))])[0][0]
    assert text_only != pytest.approx(got[0][0], abs=1e-6)


def test_generate_until_respects_max_tokens_and_until(tiny_lm, images):
    tok = tiny_lm.tokenizer
    context = "what color is the circle ?"
    free = tiny_lm.generate_until([_request("generate_until", (context, {"until": [], "max_gen_toks": 6}))])[0]
    ids = tok(free, add_special_tokens=False).input_ids
    assert 1 <= len(ids) <= 6
    short = tiny_lm.generate_until([_request("generate_until", (context, {"until": [], "max_gen_toks": 2}))])[0]
    assert len(tok(short, add_special_tokens=False).input_ids) <= 2 and free.startswith(short)
    assert len(ids) >= 3  # the tiny seed-0 model runs on for 6 tokens (nano's decoder fuses them: no spaces)
    stop = tok.decode(ids[2:3])  # stopping at the third token's text cuts everything from it on
    cut = tiny_lm.generate_until([_request("generate_until", (context, {"until": [stop], "max_gen_toks": 6}))])[0]
    assert cut == free.split(stop)[0] and 0 < len(cut) < len(free)
    # image requests go through the session's own generate (the accuracy suite's path)
    rows = images.select(range(2))
    reqs = [_request("generate_until", (q, {"until": ["\n"], "max_gen_toks": 3}, {"visual": [img]}), doc_id=i)
            for i, (q, img) in enumerate(zip(rows["question"], rows["image"]))]
    expected = tiny_lm.session.generate(rows["image"], rows["question"], max_new_tokens=3).texts
    assert tiny_lm.generate_until(reqs) == [e.split("\n")[0] for e in expected]


def test_runtime_without_logits_gets_one_line_error(tiny_lm):
    from harness.errors import RuntimeBackendError
    from harness.lmeval.adapter import HarnessLM

    class NoLogits:  # what a non-torch runtime session offers: processor + generate
        processor = tiny_lm.processor

    lm = HarnessLM(session=NoLogits(), runtime="onnxruntime")
    with pytest.raises(RuntimeBackendError, match="onnxruntime.*torch-eager") as err:
        lm.loglikelihood([_request("loglikelihood", ("a", " b"))])
    assert "\n" not in str(err.value)


def test_registered_with_lm_eval():
    from lm_eval.api.registry import get_model

    from harness.lmeval.adapter import HarnessLM

    assert get_model("fastvlm-harness") is HarnessLM


def test_local_tasks_through_suite_kind(tiny_lm, tmp_path):
    """The shipped local tasks (text multiple choice + generation, multimodal multiple choice) run
    through lm-eval and come back in the accuracy suite's shape."""
    from harness.spec.suite_files import load_suite
    from harness.suites._context import SuiteContext
    from harness.suites.lm_eval import LmEval

    config = load_suite("lmeval-nano-arith").model_copy(
        update={"tasks": ["nano_arith", "nano_arith_gen", "nano_vqa_mc"], "limit": 4, "metrics": []})
    ctx = SuiteContext(runtime_name="torch-eager", runtime=None, artifact=tmp_path, work_dir=tmp_path,
                       variant_key="tiny", cache_dir=tmp_path, use_cache=True)
    ctx.adopt(tiny_lm.session)
    result = LmEval().run(config, ctx)
    assert set(result["groups"]) == {"nano_arith", "nano_arith_gen", "nano_vqa_mc"}
    assert result["n"] == 12 and len(result["items"]) == 12
    assert result["lm_eval"]["nano_arith"]["acc,none"] == pytest.approx(result["groups"]["nano_arith"]["score"])
    low, high = result["ci"]
    assert 0 <= low <= result["score"] <= high <= 1
    arith = [it for it in result["items"] if it["group"] == "nano_arith"]
    assert all(it["references"][0] in {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"} for it in arith)
    assert sum(it["score"] for it in arith) / 4 == pytest.approx(result["groups"]["nano_arith"]["score"])
    assert result["cache"] == {"hits": 0, "misses": 4}  # generate_until answers only
    again = LmEval().run(config, ctx)
    assert again["cache"] == {"hits": 4, "misses": 0} and again["items"] == result["items"]


def test_unknown_task_and_include_path_are_config_errors(tmp_path):
    from harness.errors import ConfigError
    from harness.spec.suite_files import parse_suite
    from harness.suites._context import SuiteContext
    from harness.suites.lm_eval import LmEval

    ctx = SuiteContext(runtime_name="torch-eager", runtime=None, artifact=tmp_path, work_dir=tmp_path)
    bad = parse_suite({"name": "x", "kind": "lm-eval", "tasks": ["nano_arithh"], "include_path": "lm_eval_tasks"})
    with pytest.raises(ConfigError, match="did you mean 'nano_arith'"):
        LmEval().run(bad, ctx)
    missing = parse_suite({"name": "x", "kind": "lm-eval", "tasks": ["t"], "include_path": "no/such/dir"})
    with pytest.raises(ConfigError, match="include_path 'no/such/dir' is not a folder"):
        LmEval().run(missing, ctx)


def test_recipe_with_lm_eval_suite_end_to_end(tmp_path, nano_dir, monkeypatch):
    """The multimodal local tasks on the nano reference: real scores, in results.json and the report.
    The worker runs in this process (spawning one costs ~20 s of imports; isolation is tested elsewhere)."""
    import harness.isolation
    from harness.run.runner import run
    def in_process(target, job, files, timeout_s, environ=None):
        import importlib

        files.log.parent.mkdir(parents=True, exist_ok=True)
        module, function = target.split(":")
        return harness.isolation.Outcome(True, getattr(importlib.import_module(module), function)(job))

    monkeypatch.setattr(harness.isolation, "run_isolated", in_process)

    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "lme.yaml").write_text(textwrap.dedent("""\
        name: lme
        kind: lm-eval
        include_path: lm_eval_tasks
        tasks: [nano_vqa_mc, nano_vqa_gen]
        limit: 12
        batch_size: 12
        """))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: lme\nbase: nano\nbaseline: base\nsuites: [lme]\nvariants:\n"
                      "  - {name: base, steps: []}\n")
    run_dir = run(recipe, output=tmp_path / "reports", progress=False, use_cache=False)
    summary = json.loads((run_dir / "results.json").read_text())
    acc = summary["variants"][0]["runtimes"]["torch-eager"]["accuracy"]["lme"]
    assert acc["n"] == 24 and acc["score"] >= 0.7  # nano answers its own question kinds (0.85 on all of them)
    assert acc["retention"] == 1.0 and acc["n_paired"] == 24
    assert set(acc["groups"]) == {"nano_vqa_mc", "nano_vqa_gen"}
    raw = json.loads((run_dir / "variants" / "base" / "result.json").read_text())
    suite = raw["measurements"]["torch-eager"]["suites"]["lme"]
    assert suite["kind"] == "lm-eval" and "acc,none" in suite["lm_eval"]["nano_vqa_mc"]
    assert "lme" in (run_dir / "report.html").read_text()
