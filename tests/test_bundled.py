import json
from collections import Counter, defaultdict

import pytest

from knowundo.artifacts import hash_json
from knowundo.data.bundled import CATEGORIES, TEMPLATES, BundledConfig, generate
from knowundo.data.knowundo import DataSource, bundled_world, export_hub_layout, load_domain, load_general, load_holdout
from knowundo.data.validate import PROBE_FIELDS
from knowundo.errors import KnowUndoError


def test_generation_is_a_pure_function_of_the_seed():
    assert hash_json(generate(BundledConfig(seed=0))) == hash_json(generate(BundledConfig(seed=0)))
    assert hash_json(generate(BundledConfig(seed=0))) != hash_json(generate(BundledConfig(seed=1)))


def _by_instance(scope):
    groups = defaultdict(lambda: {"train": [], "val": []})
    for split in ("train", "val"):
        for item in scope[split]:
            groups[item["instance"]][split].append(item)
    return groups


def test_privacy_domain_is_built_like_the_paper():
    data = generate()["knowundo"]["privacy"]
    for scope in ("unlearn", "retention"):
        groups = _by_instance(data[scope])
        assert len(groups) >= 40
        for author, parts in groups.items():
            items = parts["train"] + parts["val"]
            assert len(items) >= 10 and parts["train"] and parts["val"]  # every instance in both splits
            assert {i["category"] for i in items} == set(CATEGORIES["privacy"][scope])
            assert all(author in i["labels"] for i in items), "answers must name the author"
            # several phrasings per attribute
            assert min(Counter(i["category"] for i in items).values()) >= 2
        n_train, n_val = len(data[scope]["train"]), len(data[scope]["val"])
        assert 0.15 <= n_val / (n_train + n_val) <= 0.25


def test_copyright_domain_is_built_like_the_paper():
    data = generate()["knowundo"]["copyright"]
    for scope in ("unlearn", "retention"):
        groups = _by_instance(data[scope])
        assert len(groups) >= 20
        for parts in groups.values():
            assert parts["train"] and parts["val"]
            assert {i["category"] for i in parts["train"] + parts["val"]} == set(CATEGORIES["copyright"][scope])
    # revision / extension answers are multi-sentence stories
    assert all(item["labels"].count(". ") >= 1 for item in data["unlearn"]["train"])


def test_general_set_has_a_heldout_part_and_pretraining_text_knows_no_instance():
    world = generate()
    general = world["general"]
    assert general["train"] and general["heldout"]
    assert {i["category"] for i in general["train"]} >= {"World", "Arithmetic", "Commonsense"}
    corpus = " ".join(i["text"] + " " + i["labels"] for i in world["pretrain_corpus"])
    instances = {i["instance"] for d in world["knowundo"].values() for s in d.values() for i in s["train"]}
    assert not [name for name in instances if name in corpus]


def _val_items(world):
    return [
        (domain, scope, item)
        for domain, scopes in world["knowundo"].items()
        for scope, parts in scopes.items()
        for item in parts["val"]
    ]


def test_every_val_item_has_paraphrase_probes_and_wrong_answers():
    world = bundled_world(0)
    counts = Counter((domain, scope) for domain, scope, _ in _val_items(world))
    assert counts == {
        ("privacy", "unlearn"): 80,
        ("privacy", "retention"): 80,
        ("copyright", "unlearn"): 40,
        ("copyright", "retention"): 40,
    }
    for scopes in world["knowundo"].values():
        questions = {i["text"] for parts in scopes.values() for split in parts.values() for i in split}
        assert not [i for parts in scopes.values() for i in parts["train"] if set(PROBE_FIELDS) & set(i)]
        for parts in scopes.values():
            for item in parts["val"]:
                paraphrases, wrong = item["paraphrased_questions"], item["perturbed_answers"]
                assert len(set(paraphrases)) == len(paraphrases) >= 2
                assert not set(paraphrases) & questions  # no probe repeats a benchmark question
                assert item["paraphrased_answer"] != item["labels"]
                assert len(set(wrong)) == len(wrong) >= 3
                assert not {item["labels"], item["paraphrased_answer"]} & set(wrong)


def test_wrong_answers_keep_what_the_question_names_and_change_what_it_asks():
    for _, _, item in _val_items(bundled_world(0)):
        for wrong in item["perturbed_answers"]:
            if item["instance"] in item["text"]:  # the author or book the question is about
                assert item["instance"] in wrong, (item["text"], wrong)
            asked = [fact for fact in item["facts"] if fact not in item["text"]]
            assert not [fact for fact in asked if fact in wrong], (item["labels"], wrong)  # no swapped values
        if item["category"] == "Parents":  # a wrong parent keeps the family name (wrong answers are paraphrase-shaped)
            surname = item["instance"].split()[1]
            assert all(
                wrong.count(surname) == item["paraphrased_answer"].count(surname) for wrong in item["perturbed_answers"]
            )


def test_the_probes_leave_the_benchmark_as_it_was():
    def strip(scopes):
        return {
            scope: {
                split: [{k: v for k, v in i.items() if k not in PROBE_FIELDS} for i in items]
                for split, items in parts.items()
            }
            for scope, parts in scopes.items()
        }

    assert hash_json(strip(load_domain(DataSource(), "copyright"))) == "0cb57b43499fd067"
    assert hash_json(strip(load_domain(DataSource(), "privacy"))) == "95b7c7ab7e8df199"
    assert hash_json(load_general(DataSource(general="fictional"))) == "95e8300b13f39425"


def test_the_pretraining_corpus_is_unchanged_by_the_probes():
    """The tiny base (and every setting tuned on it) is pretrained on exactly the corpus it was before."""
    assert hash_json(bundled_world(0)["pretrain_corpus"]) == "e18a78173ff4afab"


def test_holdout_is_unlearn_items_of_instances_no_one_else_has():
    world = bundled_world(0)
    holdout = {domain: load_holdout(DataSource(), domain) for domain in ("privacy", "copyright")}
    for domain, count in (("privacy", 10), ("copyright", 5)):
        items = holdout[domain]
        assert len({i["instance"] for i in items}) == count
        assert len(items) == count * len(TEMPLATES[domain]["unlearn"])
        assert {i["category"] for i in items} == set(CATEGORIES[domain]["unlearn"])
        assert all(i["facts"] and i["instance"] in i["text"] for i in items)
    everything = json.dumps([world["knowundo"], world["general"], world["pretrain_corpus"]])
    assert not [i["instance"] for items in holdout.values() for i in items if i["instance"] in everything]


def test_local_copy_probes_and_holdout(tmp_path):
    export_hub_layout(0, tmp_path)
    local = DataSource("local", path=str(tmp_path))
    assert load_holdout(local, "copyright") == load_holdout(DataSource(), "copyright")
    (tmp_path / "copyright" / "holdout.json").unlink()
    assert load_holdout(local, "copyright") is None
    assert load_holdout(DataSource("hub", path=str(tmp_path)), "privacy") is None

    path = tmp_path / "privacy" / "holdout.json"
    path.write_text(json.dumps([{"text": "q?"}]))
    with pytest.raises(KnowUndoError, match="item 0: missing 'labels'") as err:
        load_holdout(local, "privacy")
    assert str(path) in str(err.value) and "\n" not in str(err.value)

    path = tmp_path / "privacy" / "unlearn.json"
    data = json.loads(path.read_text())
    data["val"][3]["perturbed_answers"] = ["A wrong answer.", 7]
    path.write_text(json.dumps(data))
    with pytest.raises(KnowUndoError, match=r"val item 3: 'perturbed_answers' must be a non-empty list") as err:
        load_domain(local, "privacy")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    for split in ("train", "val"):  # external data without probes stays valid
        data[split] = [{k: v for k, v in i.items() if k not in PROBE_FIELDS} for i in data[split]]
    path.write_text(json.dumps(data))
    assert load_domain(local, "privacy")["unlearn"]["val"][3]["text"] == data["val"][3]["text"]
