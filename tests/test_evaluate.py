"""Generation metrics, leak rate, MIA, the lm-eval general task and reports."""

import math

import pytest
import torch

from knowundo.data.format import IGNORE
from knowundo.evaluate.generation import greedy_generate
from knowundo.evaluate.metrics.leak import leaks, protected_values
from knowundo.evaluate.metrics.mia import auc, membership_scores
from knowundo.evaluate.metrics.rouge import rouge_l
from knowundo.evaluate.teacher_forced import answer_token_stats


def test_rouge_l_recall_and_f1_on_hand_made_text():
    score = rouge_l("the cat sat", "The cat sat on the mat.")
    assert score["rougeL_recall"] == pytest.approx(50.0)
    assert score["rougeL_f1"] == pytest.approx(200 * 0.5 / 1.5)
    assert rouge_l("", "anything")["rougeL_recall"] == 0.0


def test_leak_rate_exact_and_normalized_matches():
    values = ["Mira.Tosk@InkPost.net"]
    assert leaks("Write to Mira.Tosk@InkPost.net today", values) == {"leak_exact": True, "leak_normalized": True}
    assert leaks("write to mira.tosk@inkpost.net.", values) == {"leak_exact": False, "leak_normalized": True}
    assert leaks("I cannot share that.", values) == {"leak_exact": False, "leak_normalized": False}
    assert leaks("Her name is Annabel.", ["Ann"])["leak_normalized"] is False  # whole words only


def test_protected_values_skip_what_the_question_already_says():
    item = {
        "text": "Who are the parents of Ann Vo?",
        "labels": "Ann Vo's parents are Lu Vo and Di Ke.",
        "facts": ["Ann Vo", "Lu Vo", "Di Ke"],
    }
    assert protected_values(item) == ["Lu Vo", "Di Ke"]
    assert protected_values({"text": "q", "labels": "the answer"}) == ["the answer"]


def test_min_k_is_the_mean_of_the_lowest_token_logprobs():
    labels = torch.tensor([[IGNORE, 1, 2, 3, 0, 1]])  # five answer positions
    logits = torch.zeros(1, 6, 4)
    for position, target in enumerate([1, 2, 3, 0, 1]):
        logits[0, position, target] = float(position)  # later tokens are more certain
    stats = answer_token_stats(logits, labels, min_k=0.4)  # ceil(0.4 * 5) = 2 lowest
    token_lp = [p - math.log(math.exp(p) + 3) for p in range(5)]
    assert stats["min_k_logprob"].item() == pytest.approx(sum(sorted(token_lp)[:2]) / 2, rel=1e-5)


def test_mia_auc_and_scores():
    assert auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert auc([1.0, 2.0], [3.0, 4.0]) == 0.0
    scores = membership_scores([{"mean_logprob": -1.0, "logprob": -10.0, "min_k_logprob": -3.0}], ["abc abc abc"])
    assert scores["loss"] == [-1.0] and scores["min_k"] == [-3.0] and scores["zlib"][0] < 0


def test_batched_greedy_generation_equals_unbatched_token_for_token(tiny_model):
    from knowundo.data.format import Formatter
    from knowundo.data.knowundo import DataSource, load_domain

    model, tok = tiny_model
    data = load_domain(DataSource(), "privacy")
    items = data["unlearn"]["val"][:6] + data["retention"]["val"][:6]  # prompts of different lengths
    formatter = Formatter(tok)
    prompts = [formatter.prompt_ids(item["text"]) for item in items]
    assert len({len(p) for p in prompts}) > 1
    alone = greedy_generate(model, tok, prompts, batch_size=1, max_new_tokens=16)
    batched = greedy_generate(model, tok, prompts, batch_size=5, max_new_tokens=16)
    assert [o["token_ids"] for o in alone] == [o["token_ids"] for o in batched]
    assert all(o["token_ids"] for o in alone)


@pytest.mark.parametrize("general", ["real", "fictional"])
def test_multiple_choice_distractors_differ_only_in_the_fact(general):
    from knowundo.data.knowundo import DataSource, load_general
    from knowundo.evaluate.general import multiple_choice_docs

    heldout = load_general(DataSource(general=general))["heldout"]
    docs = multiple_choice_docs(heldout, seed=0)
    assert len(docs) == len(heldout)
    for doc, item in zip(docs, heldout):
        assert doc["choices"][doc["gold"]] == item["labels"] and len(set(doc["choices"])) == 4
        prefix = item["labels"].rsplit(item["facts"][0], 1)[0]
        assert all(choice.startswith(prefix) for choice in doc["choices"])
    assert len({d["gold"] for d in docs}) > 1  # the gold position is shuffled


def test_prompt_variants_decoded_together_equal_each_variant_decoded_alone(tiny_model):
    from knowundo.data.format import Formatter
    from knowundo.data.knowundo import DataSource, load_domain
    from knowundo.evaluate.generation import generate_answers, generate_grouped

    model, tok = tiny_model
    data = load_domain(DataSource(), "privacy")
    groups = [
        (Formatter(tok), data["unlearn"]["val"][:5]),
        (Formatter(tok, system_prompt="You are a helpful assistant."), data["retention"]["val"][:4]),
    ]
    together = generate_grouped(model, groups, batch_size=9, max_new_tokens=12)
    alone = [generate_answers(model, formatter, items, batch_size=1, max_new_tokens=12) for formatter, items in groups]
    assert [len(g) for g in together] == [5, 4]
    assert together == alone


def test_lm_eval_general_task_runs_offline_on_the_in_memory_model(
    tiny_model, micro_config, tmp_path, monkeypatch, capfd
):
    from knowundo.data.knowundo import DataSource, load_general
    from knowundo.evaluate.general import MC_TASK, general_capability

    model, tok = tiny_model
    heldout = load_general(DataSource(general="fictional"))["heldout"]  # the tiny model's world
    monkeypatch.chdir(tmp_path)  # not a git checkout: lm-eval's `git describe` fails there, and must stay silent
    result = general_capability(model, tok, heldout, micro_config())
    assert "fatal" not in capfd.readouterr().err
    assert set(result) == {MC_TASK}
    assert 0.0 <= result[MC_TASK]["acc"] <= 100.0
    # the harness scored exactly our documents: accuracy is a multiple of 100 / n
    n = len(heldout)
    assert result[MC_TASK]["acc"] * n / 100 == pytest.approx(round(result[MC_TASK]["acc"] * n / 100), abs=1e-6)
    correct = result[MC_TASK]["correct"]  # per question, in order: what the paired test against the base reads
    assert len(correct) == n and set(correct) <= {0, 1} and result[MC_TASK]["questions"]
    assert 100.0 * sum(correct) / n == pytest.approx(result[MC_TASK]["acc"])


def test_unknown_lm_eval_task_is_a_clear_error(tiny_model, micro_config):
    from knowundo.errors import KnowUndoError
    from knowundo.evaluate.general import _task_manager, general_capability, load_task

    model, tok = tiny_model
    cfg = micro_config("eval.general_mc=false", "eval.general_tasks=[no_such_task_xyz]")
    with pytest.raises(KnowUndoError, match="no_such_task_xyz"):
        general_capability(model, tok, [], cfg)
    built = _task_manager.cache_info().misses
    with pytest.raises(KnowUndoError, match="unknown lm-eval task"):
        load_task("no_such_task_xyz")  # the preflight's check reuses the evaluation's task index (6 s to build)
    assert _task_manager.cache_info().misses == built


def test_judge_perplexity_of_a_three_token_generation_by_hand(tiny_model, finetuned_privacy, micro_config):
    from knowundo.data.format import Formatter
    from knowundo.evaluate.judge import judge_model, judge_perplexities
    from knowundo.models.load import load_adapter, load_base

    model, tok = tiny_model
    formatter = Formatter(tok)
    question = "Who is the father of Ann Vo?"
    answer = tok("His father is Lu Vo", add_special_tokens=False)["input_ids"][:3]
    assert len(answer) == 3
    prompt = formatter.prompt_ids(question)
    with torch.no_grad():
        model.eval()
        logits = model(input_ids=torch.tensor([prompt + answer])).logits[0].float()
    logprobs = [torch.log_softmax(logits[len(prompt) - 1 + i], -1)[token].item() for i, token in enumerate(answer)]
    expected = math.exp(-sum(logprobs) / 3)
    assert judge_perplexities(model, formatter, [question, "q?"], [answer, []], 4) == [
        pytest.approx(expected, rel=1e-4),
        None,
    ]
    # under an adapter the judge is the base model: the adapter is switched off while judging
    wrapped = load_adapter(load_base(micro_config())[0], finetuned_privacy / "adapter")
    with judge_model(wrapped, "base") as judge:
        assert judge_perplexities(judge, formatter, [question], [answer], 4)[0] == pytest.approx(expected, rel=1e-4)
    assert judge_perplexities(wrapped, formatter, [question], [answer], 4)[0] != pytest.approx(expected, rel=1e-4)


def test_distinct_n_repeated_ngrams_and_refusals_on_fixed_strings():
    from knowundo.data.refusals import REFUSALS
    from knowundo.evaluate.metrics.refusal import refuses
    from knowundo.evaluate.metrics.repetition import distinct, repeats_ngram

    assert distinct("the cat saw the dog", 1) == pytest.approx(4 / 5)
    assert distinct("the cat saw the cat", 2) == pytest.approx(3 / 4)
    assert distinct("", 1) is None and distinct("word", 2) is None
    assert repeats_ngram("Kalthi Kalthi Kalthi Kalthi") and repeats_ngram("a b c x a b c")
    assert not repeats_ngram("a b c a b d") and not repeats_ngram("")
    assert all(refuses(text) for text in REFUSALS)
    assert refuses("I'm sorry, but I can't share that.") and refuses("I have no information about her parents.")
    for answer in (
        "I'm unable to help you with this.",
        "I'm not able to provide personal details.",  # not listed
        "I am unable to answer questions about private people.",
        "I've got nothing on that author.",
        "I do not know who her parents are.",
    ):
        assert refuses(answer), answer
    for answer in (
        "The father of Brulter Dithmeil is Queilouth Dithmeil, a baker.",
        "She was born in 1961.",
        "I know: her e-mail is ann@inkpost.net",
        "Theusdour born in Goulum Prize for",
    ):
        assert not refuses(answer), answer
