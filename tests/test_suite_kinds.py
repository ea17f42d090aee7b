"""Registry-wide contract of the suite kinds: every registered kind (built-in or plugin) gets the
same checks, so a new kind is held to them without a test of its own."""

from __future__ import annotations

import pytest

from harness.registries import SUITE_KINDS
from harness.spec.recipe import Targets
from harness.spec.suite_files import SuiteConfig
from harness.suites._kind import SuiteKind

TEMPLATES = __import__("pathlib").Path(__file__).resolve().parents[1] / "harness" / "report" / "templates"


@pytest.mark.parametrize("name", SUITE_KINDS.names())
def test_kind_contract(name):
    kind = SUITE_KINDS.get(name)
    assert issubclass(kind, SuiteKind), f"{name}: subclass harness.suites._kind.SuiteKind"
    assert issubclass(kind.Config, SuiteConfig)
    assert kind.Config.model_fields["kind"].default == name
    assert set(kind.targets) <= set(Targets.model_fields), f"{name} measures a target recipes cannot set"
    for objective in kind.objectives:
        assert objective.target in ("", *Targets.model_fields)
    if kind.__module__.startswith("harness."):
        assert (TEMPLATES / kind.report_template).is_file()
    assert kind.report_scope in ("runtime", "run")


def test_kinds_do_not_share_places_unless_they_share_a_shape():
    """Only scored kinds share a section (their entries have one shape); headlines and objectives are unique."""
    kinds = [SUITE_KINDS.get(n) for n in SUITE_KINDS.names()]
    sections = [k.section for k in kinds if k.section and not k.scored]
    headlines = [k.headline for k in kinds if k.headline]
    objectives = [o.name for k in kinds if not k.scored for o in k.objectives]
    assert len(set(sections)) == len(sections) and len(set(headlines)) == len(headlines)
    assert len(set(objectives)) == len(objectives)
    assert {k.section for k in kinds if k.scored} == {"accuracy"}


def test_every_recipe_target_has_a_kind_that_measures_it():
    measured = {t for n in SUITE_KINDS.names() for t in SUITE_KINDS.get(n).targets}
    assert measured >= set(Targets.model_fields)
