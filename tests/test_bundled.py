from collections import Counter, defaultdict

from knowundo.artifacts import hash_json
from knowundo.data.bundled import CATEGORIES, BundledConfig, generate


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
