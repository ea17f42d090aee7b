"""nano's relation curriculum: which train rows each stage draws on, and that the stages train."""

from __future__ import annotations

import math

import pytest

ROWS = 400


@pytest.fixture(scope="module")
def train_rows():
    from harness.data.nano_vqa import load_nano_vqa

    return load_nano_vqa("train").select(range(ROWS))


@pytest.mark.parametrize("relation", ["further left", "further right", "higher up", "lower down"])
def test_relation_in_reads_the_relation_asked(relation):
    from harness.data.nano_scenes import Thing, ask_relation, relation_in

    a = Thing("red", "circle", 0, 0, True, (1, 1, 12, 12))
    b = Thing("blue", "square", 2, 3, False, (50, 34, 58, 42))
    assert relation_in(ask_relation(a, b, relation).question) == relation


def test_relation_in_is_none_for_other_kinds(train_rows):
    from harness.data.nano_vqa import relation_in

    others = [q for q, kind in zip(train_rows["question"], train_rows["kind"], strict=True) if kind != "relation"]
    assert others and all(relation_in(q) is None for q in others)


def test_first_stage_keeps_one_direction_per_axis(train_rows):
    from harness.data.nano_vqa import relation_in
    from harness.training.nano import curriculum_rows

    first = curriculum_rows(train_rows, "relation-first")
    asked = [relation_in(q) for q in first["question"]]
    assert set(first["kind"]) == {"relation"}
    assert set(asked) == {"further left", "higher up"}
    relations = [relation_in(q) for q in train_rows["question"]]
    assert len(first) == sum(r in ("further left", "higher up") for r in relations)
    # the train split asks each pair both ways, so the first stage holds half the relation rows
    assert len(first) == sum(r is not None for r in relations) // 2


def test_relation_and_all_stages(train_rows):
    from harness.training.nano import curriculum_rows

    relation = curriculum_rows(train_rows, "relation")
    assert set(relation["kind"]) == {"relation"}
    assert len(relation) == list(train_rows["kind"]).count("relation")
    assert curriculum_rows(train_rows, "all") is train_rows
    with pytest.raises(ValueError, match="unknown curriculum rows 'depth'"):
        curriculum_rows(train_rows, "depth")


def test_the_curriculum_is_part_of_nanos_fingerprint_not_the_siblings(monkeypatch):
    from harness.models import nano, siblings

    before, sibling_before = nano.fingerprint(), siblings.fingerprint("nano-internvl")
    monkeypatch.setattr(nano, "CURRICULUM", nano.CURRICULUM[:-1])
    assert nano.fingerprint() != before
    assert siblings.fingerprint("nano-internvl") == sibling_before


def test_run_curriculum_trains_each_stage_on_its_rows(train_rows, one_thread):
    import torch

    from harness.models import nano
    from harness.training.nano import curriculum_rows, run_curriculum

    processor = nano.build_processor()
    model = nano.build_model(nano.build_config(processor.tokenizer))
    before = [p.detach().clone() for p in model.parameters()]
    stages = ({"rows": "relation-first", "steps": 2}, {"rows": "all", "steps": 1})
    done = run_curriculum(model, processor, stages, train_rows, progress=False)
    assert [s["rows"] for s in done] == ["relation-first", "all"]
    assert [s["train_rows"] for s in done] == [len(curriculum_rows(train_rows, "relation-first")), ROWS]
    assert all(math.isfinite(s["final_loss"]) for s in done)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_without_auxiliary_keeps_the_batches_and_drops_the_heads(train_rows, one_thread):
    import torch

    from harness.data.nano_vqa import EMPTY_CELL
    from harness.models import nano
    from harness.training.batches import VQABatcher

    processor = nano.build_processor()
    model = nano.build_model(nano.build_config(processor.tokenizer))
    batcher = VQABatcher(processor, train_rows)
    batcher.enable_auxiliary(model.config.vision_config.hidden_size, EMPTY_CELL + 1, 10)
    plain = batcher.without_auxiliary()
    assert plain.aux_heads is None and batcher.aux_heads is not None
    assert plain.rows_of_image is batcher.rows_of_image and len(plain) == len(batcher)
    with torch.no_grad():
        both, lm_only = batcher.loss(model, [0, 1, 2]), plain.loss(model, [0, 1, 2])
        fresh = VQABatcher(processor, train_rows).loss(model, [0, 1, 2])
    # the auxiliary terms are cross-entropies (> 0); what is left is a plain batcher's LM loss
    assert float(both) > float(lm_only)
    assert float(lm_only) == float(fresh)
