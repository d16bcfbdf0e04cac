import math

import pytest
import torch

from knowundo.data.format import IGNORE
from knowundo.evaluate.teacher_forced import aggregate, answer_token_stats, score_features


def test_shift_on_a_hand_made_five_token_example():
    # sequence: [q0, q1, a0, a1, eos]; answer labels at positions 2, 3, 4
    labels = torch.tensor([[IGNORE, IGNORE, 5, 6, 7]])
    vocab = 8
    logits = torch.full((1, 5, vocab), -10.0)
    logits[0, 1, 5] = 10.0  # position 1 predicts token 2 (a0 = 5): right
    logits[0, 2, 1] = 10.0  # position 2 predicts a1 = 6: wrong (says 1)
    logits[0, 3, 7] = 10.0  # position 3 predicts eos = 7: right
    logits[0, 4, 6] = 10.0  # position 4 predicts past the end: must be ignored
    stats = answer_token_stats(logits, labels)
    assert stats["tokens"].item() == 3 and stats["correct"].item() == 2
    log_z = math.log(math.exp(10) + (vocab - 1) * math.exp(-10))
    expected = (10 - log_z) + (-10 - log_z) + (10 - log_z)
    assert stats["logprob"].item() == pytest.approx(expected, rel=1e-5)


def test_bf16_logits_are_scored_in_float32():
    labels = torch.tensor([[IGNORE, 3, 4]])
    logits = torch.zeros(1, 3, 300, dtype=torch.bfloat16)
    logits[0, 0, 3] = 1.0
    logits[0, 1, 4] = 1.0
    assert answer_token_stats(logits, labels)["correct"].item() == 2


def test_aggregate_reports_inf_ppl_instead_of_crashing():
    result = aggregate([{"accuracy": 0.0, "mean_logprob": -1e6, "exact_match": False, "answer_tokens": 3}])
    assert result["ppl"] == math.inf


def test_batched_scores_equal_batch_size_one(tiny_model):
    from knowundo.data.format import Formatter, encode_items
    from knowundo.data.knowundo import DataSource, load_domain

    model, tok = tiny_model
    items = load_domain(DataSource(), "copyright")["unlearn"]["val"][:12]
    features = encode_items(items, Formatter(tok)).features
    one = score_features(model, features, tok.pad_token_id, 1)
    many = score_features(model, features, tok.pad_token_id, 8)
    for a, b in zip(one, many):
        assert a["accuracy"] == b["accuracy"] and a["exact_match"] == b["exact_match"]
        assert a["mean_logprob"] == pytest.approx(b["mean_logprob"], abs=1e-4)


def test_answer_positions_only_give_the_full_vocabulary_pass_values():
    """Normalising over the vocabulary at answer positions only is the same computation as over every position
    and then masking (what the stats were before): equal values on random logits, padding and prompts included."""
    from knowundo.logits import token_logprobs

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 9, 64, generator=generator) * 3
    labels = torch.randint(0, 64, (4, 9), generator=generator)
    labels[:, :3] = -100
    labels[1, 6:] = -100  # a shorter answer (padding)
    labels[2, 4::2] = logits[2, 3::2].argmax(-1)  # some correct predictions
    stats = answer_token_stats(logits, labels)
    logprob, mask = token_logprobs(logits, labels)
    predicted = (logits[:, :-1].argmax(-1) == labels[:, 1:]) & mask
    assert torch.equal(stats["tokens"], mask.sum(-1)) and torch.equal(stats["correct"], predicted.sum(-1))
    assert stats["correct"][2] > 0
    assert torch.allclose(stats["logprob"], logprob.sum(-1), atol=1e-5, rtol=0)
