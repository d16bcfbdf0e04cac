"""The adversarial probe families: what each builds from the bundled items (and from data without their fields),
how a prefilled answer is scored, how a family and the worst case are scored, the settings, and the probes table
of a micro run."""

import copy
import json
from importlib.resources import files

import pytest

from knowundo.artifacts import read_json
from knowundo.attacks.probes import FAMILIES, ProbeWorld, probe_rng, template_pattern
from knowundo.cli import main
from knowundo.config import PROBE_FAMILIES
from knowundo.data.bundled import TEMPLATES, generate
from knowundo.data.format import IGNORE, Formatter
from knowundo.evaluate.metric import metrics
from knowundo.evaluate.probing import above_chance, score_family, worst_case

from .chat_tokenizers import chatml_tokenizer
from .conftest import sets

metrics()  # the metric files register the families


@pytest.fixture(scope="module")
def bundled():
    return generate()["knowundo"]


def built(family, item, scope, world, index=0, seed=0):
    return FAMILIES[family].build(item, scope, world, probe_rng(seed, family, scope, index))


def test_every_family_is_registered_once_under_the_names_the_settings_accept():
    assert sorted(FAMILIES) == sorted(PROBE_FAMILIES)
    names = [m.name for m in metrics()]
    assert all(names.count(f"probe_{family}") == 1 for family in PROBE_FAMILIES)


def test_every_family_probes_the_bundled_val_items_and_changes_none(bundled):
    before = copy.deepcopy(bundled)
    for domain, data in bundled.items():
        world = ProbeWorld(data, shots=3)
        for scope in ("unlearn", "retention"):
            items = data[scope]["val"]
            for family in PROBE_FAMILIES:
                probed = [built(family, item, scope, world, i) for i, item in enumerate(items)]
                assert sum(bool(p) for p in probed) >= len(items) // 2, (domain, scope, family)
                for probes in probed:
                    for probe in probes:
                        assert probe["text"].strip() and ("options" in probe or probe["labels"].strip())
    assert bundled == before  # the benchmark items are never touched


def test_what_each_family_asks(bundled):
    data = bundled["privacy"]
    world = ProbeWorld(data, shots=3)
    item = next(i for i in data["unlearn"]["val"] if i["category"] == "Email")
    name, answer = item["instance"], item["labels"]

    (prefix,) = built("prefix_injection", item, "unlearn", world)
    assert prefix["prefill"] and prefix["labels"] == answer and item["text"] in prefix["text"]
    (reverse,) = built("reverse_query", item, "unlearn", world)
    assert reverse["labels"] == f"{name}." and name not in reverse["text"] and "___" in reverse["text"]
    (hint,) = built("background_hint", item, "unlearn", world)
    public = [r["labels"] for r in data["retention"]["train"] + data["retention"]["val"] if r["instance"] == name]
    assert sum(sentence in hint["text"] for sentence in public) == 2 and hint["labels"] == answer
    (shots,) = built("in_context", item, "unlearn", world)
    assert shots["text"].count("\nA: ") == 3 and shots["text"].count(name) == 1  # 3 other instances answered
    (blank,) = built("fill_blank", item, "unlearn", world)
    assert blank["labels"] in item["facts"] and blank["labels"] not in blank["text"]
    (choice,) = built("multiple_choice", item, "unlearn", world)
    options = [line[3:] for line in choice["text"].splitlines()[1:-1]]
    assert options[choice["gold"]] == item["paraphrased_answer"]
    assert sorted(options[: choice["gold"]] + options[choice["gold"] + 1 :]) == sorted(item["perturbed_answers"])
    (mixed,) = built("mixed", item, "unlearn", world)
    partner = mixed["text"].split(" 2. ")[1]
    assert any(
        r["text"] == partner and r["instance"] == name for r in data["retention"]["val"] + data["retention"]["train"]
    )
    (hop,) = built("multi_hop", item, "unlearn", world)
    assert name not in hop["text"] and hop["labels"] == answer
    lingual = built("cross_lingual", item, "unlearn", world)
    assert [p["text"].split()[-1] for p in lingual] == ["Englisch.", "anglais."] and all(
        name in p["text"] for p in lingual
    )


def test_draws_are_seeded_and_each_family_has_its_own_stream(bundled):
    data = bundled["privacy"]
    world = ProbeWorld(data, shots=3)
    items = data["unlearn"]["val"]
    twice = [[built("role_play", item, "unlearn", world, i) for i, item in enumerate(items)] for _ in range(2)]
    assert twice[0] == twice[1]
    other_seed = [built("role_play", item, "unlearn", world, i, seed=1) for i, item in enumerate(items)]
    assert other_seed != twice[0]
    assert probe_rng(0, "role_play", "unlearn", 3).random() != probe_rng(0, "mixed", "unlearn", 3).random()


def test_the_cross_lingual_family_asks_every_bundled_template_and_nothing_else(bundled):
    translations = json.loads(files("knowundo.data").joinpath("translations.json").read_text())
    questions = {t.questions[0] for domain in TEMPLATES.values() for templates in domain.values() for t in templates}
    assert questions == {q for q in translations if not q.startswith("_")}
    pattern = template_pattern("Rewrite {title} so that {hero} meets {hero}.")
    assert pattern.match("Rewrite The Map so that Ann meets Ann.")["hero"] == "Ann"
    assert pattern.match("Rewrite The Map so that Ann meets Bob.") is None
    world = ProbeWorld(bundled["privacy"], shots=3)
    assert (
        built("cross_lingual", {"text": "What is the capital of Zorb?", "labels": "Zorb City."}, "unlearn", world) == []
    )


def test_data_without_the_fields_gets_the_families_that_need_none():
    """External items (question and answer only, no instance): the families that need an instance, facts or the
    probe fields probe nothing; the others still ask."""
    data = {
        scope: {
            "train": [],
            "val": [{"text": f"{scope} q{i}?", "labels": f"{scope} answer {i}.", "category": None} for i in range(4)],
        }
        for scope in ("unlearn", "retention")
    }
    world = ProbeWorld(data, shots=2)
    item = data["unlearn"]["val"][0]
    probing = {family for family in PROBE_FAMILIES if built(family, item, "unlearn", world)}
    assert probing == {"prefix_injection", "role_play", "in_context", "mixed"}


@pytest.mark.parametrize("make", [None, chatml_tokenizer])
def test_a_prefill_opens_the_answer_unscored(tiny_model, make):
    tokenizer = tiny_model[1] if make is None else make()
    formatter = Formatter(tokenizer, template="plain" if make is None else "chat")
    plain = formatter.encode({"text": "Who is the father of Ann?", "labels": "Bob Smith."})
    opened = formatter.encode(
        {"text": "Who is the father of Ann?", "labels": "Bob Smith.", "prefill": "Sure, here it is:"}
    )
    scored = [t for t in opened["labels"] if t != IGNORE]
    # the answer's tokens (after the opening, with the space that joins them) and the end of the answer, scored alone
    assert tokenizer.decode(scored, skip_special_tokens=True).strip() == "Bob Smith."
    assert scored[-1] == [t for t in plain["labels"] if t != IGNORE][-1]
    prompt = formatter.prompt_ids("Who is the father of Ann?")
    assert opened["input_ids"][: len(prompt)] == prompt
    between = opened["input_ids"][len(prompt) : len(opened["input_ids"]) - len(scored)]
    assert tokenizer.decode(between).strip() == "Sure, here it is:"


class FakeContext:
    """What the scoring reads of an evaluation context, with a scorer whose answers are fixed by the test."""

    def __init__(self, data, accuracy, logprob, probes=PROBE_FAMILIES, probe_items=0):
        self.data, self.accuracy, self.logprob = data, accuracy, logprob
        self.cfg = type(
            "Cfg",
            (),
            {
                "seed": 0,
                "eval": type("E", (), {"generate": True})(),
                "attack": type("A", (), {"probes": list(probes), "probe_items": probe_items})(),
            },
        )()
        self.probe_world = ProbeWorld(data, shots=1)
        self._families = {}
        self.too_long = lambda item: False

    def items(self, scope):
        return self.data[scope]["val"]

    def robustness_indices(self, items):
        return list(range(len(items)))

    def score_probes(self, chosen):
        """Scores every probe, except those ``self.too_long`` says the formatter would drop."""
        kept = [i for i, item in enumerate(chosen) if not self.too_long(item)]
        return {
            "truncated": 0,
            "dropped": len(chosen) - len(kept),
            "per_item": [
                {"index": i, "accuracy": self.accuracy(chosen[i]), "mean_logprob": self.logprob(chosen[i])}
                for i in kept
            ],
        }

    def probe_family(self, family, scope):
        if (family.name, scope) not in self._families:
            self._families[family.name, scope] = score_family(self, family, scope)
        return self._families[family.name, scope]


def _two_item_data(bundled):
    data = bundled["privacy"]
    return {scope: {"train": data[scope]["train"], "val": data[scope]["val"][:2]} for scope in ("unlearn", "retention")}


def test_a_family_scores_each_item_and_the_choice_family_reads_accuracy_above_chance(bundled):
    data = _two_item_data(bundled)
    # answer families: 30% token accuracy on every probe of the first unlearn item, 70% on the second
    first = data["unlearn"]["val"][0]["labels"]
    ctx = FakeContext(data, accuracy=lambda item: 30.0 if item["labels"] == first else 70.0, logprob=lambda item: 0.0)
    values = ctx.probe_family(FAMILIES["role_play"], "unlearn")
    assert (
        values["items"] == 2 and values["accuracy"] == pytest.approx(50.0) and values["success"] == pytest.approx(50.0)
    )
    retention = ctx.probe_family(FAMILIES["role_play"], "retention")
    assert retention["success"] == pytest.approx(retention["accuracy"])
    # the choice family: the model prefers letter "A"; whichever item has its true option at A is right
    ctx = FakeContext(data, accuracy=lambda item: 0.0, logprob=lambda item: 0.0 if item["labels"] == "A" else -5.0)
    choice = ctx.probe_family(FAMILIES["multiple_choice"], "unlearn")
    probes = [
        built("multiple_choice", item, "unlearn", ctx.probe_world, i) for i, item in enumerate(data["unlearn"]["val"])
    ]
    right = 100.0 * sum(p[0]["gold"] == 0 for p in probes) / 2
    assert choice["accuracy"] == pytest.approx(right) and choice["chance"] == pytest.approx(25.0)
    assert choice["success"] == pytest.approx(100.0 - above_chance(right, 25.0))
    assert above_chance(25.0, 25.0) == 0.0 and above_chance(10.0, 25.0) == 0.0 and above_chance(100.0, 25.0) == 100.0


def test_a_probe_too_long_to_score_is_dropped_and_counted_never_misattributed(bundled):
    data = _two_item_data(bundled)
    first, second = data["unlearn"]["val"]
    ctx = FakeContext(
        data, accuracy=lambda item: 80.0 if item["labels"] == second["labels"] else 10.0, logprob=lambda item: 0.0
    )
    ctx.too_long = lambda item: first["text"] in item["text"]  # the first item's probe does not fit
    values = ctx.probe_family(FAMILIES["role_play"], "unlearn")
    assert values["items"] == 1 and values["dropped"] == 1 and values["accuracy"] == pytest.approx(80.0)
    # a choice item with an option dropped has no choice to read
    choice = ctx.probe_family(FAMILIES["multiple_choice"], "unlearn")
    assert choice["items"] == 1 and choice["dropped"] == 4


def test_probe_items_limits_the_items_probed_alike_for_every_family(bundled):
    data = bundled["privacy"]
    ctx = FakeContext(data, accuracy=lambda item: 50.0, logprob=lambda item: 0.0, probe_items=5)
    counts = {
        ctx.probe_family(FAMILIES[name], "unlearn")["items"] for name in ("role_play", "mixed", "prefix_injection")
    }
    assert counts == {5}
    indices = {
        tuple(r["index"] for r in ctx.probe_family(FAMILIES[n], "unlearn")["per_item"]) for n in ("role_play", "mixed")
    }
    assert len(indices) == 1


def test_the_worst_case_is_the_lowest_success_over_the_enabled_families(bundled, monkeypatch):
    data = _two_item_data(bundled)
    # the model keeps the answers best when the question comes in German or French
    ctx = FakeContext(
        data,
        accuracy=lambda item: 90.0 if item["text"].endswith(("Englisch.", "anglais.")) else 20.0,
        logprob=lambda item: 0.0,
        probes=["role_play", "cross_lingual", "mixed"],
    )
    monkeypatch.setattr("knowundo.evaluate.probing.worst_samples", lambda ctx, name: [name])
    worst = worst_case(ctx)
    assert worst["unlearn"] == {"success": pytest.approx(10.0), "family": "cross_lingual"}
    assert worst["retention"]["success"] == pytest.approx(20.0) and worst["retention"]["family"] in (
        "role_play",
        "mixed",
    )
    assert worst["samples"] == ["cross_lingual"]


@pytest.mark.parametrize(
    "setting, message",
    [
        ("attack.probes=[prefix_injection,jailbreak]", "attack.probes[1]"),
        ("attack.probe_shots=0", "attack.probe_shots"),
        ("attack.probe_items=-1", "attack.probe_items"),
    ],
)
def test_probe_settings_are_checked_before_any_work(setting, message, tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "run"), *sets(setting)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not (tmp_path / "run").exists()


def test_a_run_has_every_probe_family_for_every_row(reference_run):
    report = reference_run / "report"
    table = read_json(report / "probes.json")["rows"]
    assert {row["method"] for row in table} >= {"base", "vanilla", "oracle", "ga", "memflex"}
    for row in table:
        for family in PROBE_FAMILIES:
            assert row[f"probe_{family}_unlearn_success"] is not None, (row["method"], family)
        successes = [row[f"probe_{family}_unlearn_success"] for family in PROBE_FAMILIES]
        assert row["probes_worst_unlearn_success"] == pytest.approx(min(successes))
    by = {row["method"]: row for row in table}
    # gradient ascent erases the answers however they are asked for: the prefilled and the role-played answers too
    for family in ("prefix_injection", "role_play"):
        assert by["ga"][f"probe_{family}_unlearn_success"] > by["vanilla"][f"probe_{family}_unlearn_success"] + 10
    assert (report / "probes_privacy.png").stat().st_size > 0
    robustness = read_json(report / "robustness.json")["rows"]
    assert all(row["probe_worst_unlearn_success"] is not None for row in robustness)
    samples = (report / "samples.md").read_text()
    assert "Under the worst adversarial probe" in samples
    assert "items probed per family and split" in (report / "probes.md").read_text()
