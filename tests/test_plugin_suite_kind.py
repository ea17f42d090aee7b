"""A suite kind added from outside the harness — this test module, with one class and a decorator,
no edit anywhere else — reaches results.json, the history, the report, `harness compare` and
`harness gate --baseline`, through the hooks of `harness.suites._kind.SuiteKind`."""

from __future__ import annotations

import json
import textwrap
from typing import Any, ClassVar, Literal

import pytest
from pydantic import Field
from typer.testing import CliRunner

from harness.registries import SUITE_KINDS
from harness.spec.suite_files import SuiteConfig
from harness.suites._kind import SuiteKind


class AnswerLengthConfig(SuiteConfig):
    kind: Literal["answer-length"] = "answer-length"
    items: int = Field(6, gt=0)


@SUITE_KINDS.register("answer-length", "mean characters per greedy answer (a test plugin)")
class AnswerLength(SuiteKind):
    Config = AnswerLengthConfig
    section: ClassVar[str | None] = "answer_length"

    def run(self, config: AnswerLengthConfig, ctx: Any) -> dict[str, Any]:
        from harness.data.nano_vqa import load_nano_vqa

        rows = load_nano_vqa("test").select(range(config.items))
        texts = ctx.session().generate(rows["image"], rows["question"], max_new_tokens=4).texts
        return {"mean_chars": sum(len(t) for t in texts) / len(texts), "answers": len(texts)}

    def compare(self, name: str, old: dict[str, Any], new: dict[str, Any], variant: str, runtime: str,
                policy: dict[str, Any]) -> list[Any]:
        from harness.results.compare import REGRESSION, SAME, Change

        grew = new["mean_chars"] > old["mean_chars"] * 1.5
        return [Change(variant, runtime, f"{name} mean chars", REGRESSION if grew else SAME, old["mean_chars"],
                       new["mean_chars"], f"x{new['mean_chars'] / old['mean_chars']:.3f}", None, "plugin rule")]


@pytest.fixture
def in_process_worker(monkeypatch):
    """Workers run in this process, so they see the kind this module registered (a spawned worker
    would find an installed plugin through the entry-point group instead)."""
    import harness.isolation
    def in_process(target, job, files, timeout_s, environ=None):
        import importlib

        files.log.parent.mkdir(parents=True, exist_ok=True)
        module, function = target.split(":")
        return harness.isolation.Outcome(True, getattr(importlib.import_module(module), function)(job))

    monkeypatch.setattr(harness.isolation, "run_isolated", in_process)


def test_a_plugin_kind_reaches_every_reader(tmp_path, nano_dir, in_process_worker):
    from harness.cli import app
    from harness.results.history import flatten
    from harness.run.runner import run

    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "lengths.yaml").write_text("name: lengths\nkind: answer-length\nitems: 6\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent("""\
        name: plugin
        base: nano
        baseline: base
        suites: [lengths]
        variants:
          - {name: base, steps: []}
          - {name: bf16, steps: [{kind: cast, dtype: bf16}]}
        """))
    old = run(recipe, output=tmp_path / "reports", progress=False)
    new = run(recipe, output=tmp_path / "reports", progress=False)

    def lengths_of_bf16(run_dir):  # noqa: ANN001, ANN202 - the plugin kind's headline entry in a run's summary
        summary = json.loads((run_dir / "results.json").read_text())
        return summary, summary["variants"][1]["runtimes"]["torch-eager"]["answer_length"]["lengths"]

    summary, entry = lengths_of_bf16(new)
    assert entry["answers"] == 6 and entry["mean_chars"] > 0
    assert ("bf16", "torch-eager", "lengths.mean_chars", entry["mean_chars"], None, None) in flatten(summary)

    report = (new / "report.html").read_text()
    assert "Suite kind answer-length" in report and "mean_chars" in report

    compared = CliRunner().invoke(app, ["compare", str(old), str(new), "--json"])
    assert compared.exit_code == 0, compared.output
    changes = [c for c in json.loads(compared.output)["changes"] if c["metric"] == "lengths mean chars"]
    assert len(changes) == 2 and all(c["note"] == "plugin rule" for c in changes)

    gated = CliRunner().invoke(app, ["gate", str(new), "--baseline", str(old)])
    old_chars = lengths_of_bf16(old)[1]["mean_chars"]
    # the gate's line carries both runs' measured values (its :.4g format)
    assert f"lengths mean chars no significant change {old_chars:.4g} -> {entry['mean_chars']:.4g}" in gated.output
    assert 'name="regression:lengths mean chars"' in (new / "gate.junit.xml").read_text()
