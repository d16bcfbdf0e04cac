"""Each method's loss against a hand computation, relabelling rules, and the trainer's input checks."""

import math

import pytest
import torch

from knowundo.data.format import IGNORE
from knowundo.errors import KnowUndoError
from knowundo.methods import METHODS, Side, get_method
from knowundo.methods.base import weighted_answer_kl, weighted_nll

torch.manual_seed(0)
VOCAB = 5
LOGITS = torch.randn(2, 4, VOCAB)
LABELS = torch.tensor([[IGNORE, 2, 3, IGNORE], [IGNORE, IGNORE, 1, 4]])  # sample 0: 2 answer tokens, 1: 2
REF = torch.randn(2, 4, VOCAB)


def _log_softmax(row):
    z = math.log(sum(math.exp(float(v)) for v in row))
    return [float(v) - z for v in row]


def _hand_nll(logits, labels, b):
    terms = [-_log_softmax(logits[b, t - 1])[int(labels[b, t])] for t in range(1, labels.shape[1])
             if labels[b, t] != IGNORE]
    return sum(terms) / len(terms)


def _hand_kl(current, reference, labels, b):
    terms = []
    for t in range(1, labels.shape[1]):
        if labels[b, t] == IGNORE:
            continue
        p, q = _log_softmax(reference[b, t - 1]), _log_softmax(current[b, t - 1])
        terms.append(sum(math.exp(pi) * (pi - qi) for pi, qi in zip(p, q)))
    return sum(terms) / len(terms)


def test_registry_has_the_seven_baseline_variants():
    assert {"ga", "random_label", "adversarial", "ga_gd", "ga_kl"} <= set(METHODS)
    with pytest.raises(KnowUndoError, match="unknown method 'npo2'"):
        get_method("npo2")


def test_weighted_nll_matches_hand_computation_sign_mask_and_weights():
    weight = torch.tensor([-1.0, 0.5])
    expected = (-1.0 * _hand_nll(LOGITS, LABELS, 0) + 0.5 * _hand_nll(LOGITS, LABELS, 1)) / 2
    assert weighted_nll(Side(LOGITS, LABELS, weight)).item() == pytest.approx(expected, rel=1e-5)


def test_ga_and_ga_gd_losses():
    forget = Side(LOGITS, LABELS, torch.full((2,), get_method("ga").forget_weight))
    retain = Side(REF, LABELS, torch.full((2,), get_method("ga_gd").retain_weight))
    ga = -(_hand_nll(LOGITS, LABELS, 0) + _hand_nll(LOGITS, LABELS, 1)) / 2
    gd = (_hand_nll(REF, LABELS, 0) + _hand_nll(REF, LABELS, 1)) / 2
    assert get_method("ga").loss(forget, None).item() == pytest.approx(ga, rel=1e-5)
    assert get_method("ga_gd").loss(forget, retain).item() == pytest.approx(ga + gd, rel=1e-5)


def test_ga_kl_uses_answer_tokens_only():
    forget = Side(LOGITS, LABELS, torch.full((2,), -1.0))
    retain = Side(LOGITS, LABELS, torch.ones(2), reference_logits=REF)
    kl = (_hand_kl(LOGITS, REF, LABELS, 0) + _hand_kl(LOGITS, REF, LABELS, 1)) / 2
    ga = -(_hand_nll(LOGITS, LABELS, 0) + _hand_nll(LOGITS, LABELS, 1)) / 2
    assert get_method("ga_kl").loss(forget, retain).item() == pytest.approx(ga + kl, rel=1e-5)
    # changing the reference at prompt/padding positions changes nothing
    noisy = REF.clone()
    noisy[0, 3] += 100  # position 3 of sample 0 predicts nothing (past the answer)
    noisy[1, 0] += 100  # position 0 of sample 1 predicts a prompt token
    assert weighted_answer_kl(Side(LOGITS, LABELS, torch.ones(2), noisy)).item() == pytest.approx(kl, rel=1e-5)
    with pytest.raises(KnowUndoError, match="needs reference logits"):
        weighted_answer_kl(Side(LOGITS, LABELS, torch.ones(2)))
