"""The general-knowledge sets (real for real models, fictional for the tiny model, or a file) and the subset of
instances a real model on a CPU trains on."""

import json

import pytest

from knowundo.config import load_config
from knowundo.data.knowundo import DataSource, keep_instances, load_domain, load_general
from knowundo.errors import KnowUndoError
from knowundo.evaluate.general import multiple_choice_docs


def test_the_real_set_splits_every_category_and_every_item_makes_a_multiple_choice_question():
    general = load_general(DataSource(general="real"))
    train, heldout = general["train"], general["heldout"]
    assert len(train) + len(heldout) >= 300 and 0.15 < len(heldout) / (len(train) + len(heldout)) < 0.25
    assert {i["category"] for i in train} == {i["category"] for i in heldout}
    assert not {i["text"] for i in train} & {i["text"] for i in heldout}
    assert len(multiple_choice_docs(heldout, 0)) == len(heldout)  # a fact in every answer, three distractors
    assert load_general(DataSource(general="real")) == general  # the same split on every call and machine


def test_each_preset_measures_general_ability_on_the_set_its_model_can_know():
    assert load_config("tiny").data.general == "fictional"
    for preset in ("smollm2", "llama2-7b-chat", "qwen1.5-7b-chat"):
        assert load_config(preset).data.general == "real"
    assert load_config(None, overrides=["model.name=some/model"]).data.general == "real"  # the neutral preset
    fictional = load_general(DataSource(general="fictional"))
    assert {i["category"] for i in fictional["heldout"]} >= {"World", "Arithmetic"}


def test_a_general_set_from_a_file(tmp_path):
    items = [
        {
            "text": f"What is {n} plus one?",
            "labels": f"It is {n + 1}.",
            "category": "Arithmetic",
            "facts": [str(n + 1)],
            "distractors": [str(n + 2), str(n + 3), str(n + 4)],
        }
        for n in range(10)
    ]
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(items))
    split = load_general(DataSource(general=str(listed)))
    assert (len(split["train"]), len(split["heldout"])) == (8, 2)
    parts = tmp_path / "parts.json"
    parts.write_text(json.dumps({"train": items[:7], "heldout": items[7:]}))
    assert load_general(DataSource(general=str(parts)))["heldout"] == items[7:]
    parts.write_text(json.dumps({"train": items}))
    with pytest.raises(KnowUndoError, match="expected a list of items or"):
        load_general(DataSource(general=str(parts)))
    with pytest.raises(KnowUndoError, match="neither real nor fictional nor a file"):  # past the config check
        load_general(DataSource(general="encyclopedia"))


def test_bad_general_setting_is_one_line_and_exit_2(capsys):
    from knowundo.cli import main

    assert main(["data", "--set", "data.general=encyclopedia"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.general" in err[0]


def test_a_subset_of_instances_keeps_both_scopes_and_splits_of_each():
    full = load_domain(DataSource(), "privacy")
    kept = load_domain(DataSource(instances=3), "privacy")
    instances = {scope: {i["instance"] for split in kept[scope].values() for i in split} for scope in kept}
    assert len(instances["unlearn"]) == 3 and instances["unlearn"] == instances["retention"]
    for scope in full:
        for split in full[scope]:
            assert kept[scope][split] == [i for i in full[scope][split] if i["instance"] in instances[scope]]
    assert load_domain(DataSource(instances=3), "privacy") == kept  # seeded
    with pytest.raises(KnowUndoError, match=r"data.instances=999 but the domain has 40 instances"):
        keep_instances(full, 999, 0)
