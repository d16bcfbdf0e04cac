"""Each method's loss against a hand computation, relabelling rules, and the trainer's input checks."""

import math

import pytest
import torch

from knowundo.data.format import IGNORE
from knowundo.errors import KnowUndoError
from knowundo.layout import RunLabel
from knowundo.methods import Side, check_label, get_method, method_names, method_params
from knowundo.methods.losses import weighted_answer_kl, weighted_nll

torch.manual_seed(0)
VOCAB = 5
LOGITS = torch.randn(2, 4, VOCAB)
LABELS = torch.tensor([[IGNORE, 2, 3, IGNORE], [IGNORE, IGNORE, 1, 4]])  # sample 0: 2 answer tokens, 1: 2
REF = torch.randn(2, 4, VOCAB)


def _log_softmax(row):
    z = math.log(sum(math.exp(float(v)) for v in row))
    return [float(v) - z for v in row]


def _hand_nll(logits, labels, b):
    terms = [
        -_log_softmax(logits[b, t - 1])[int(labels[b, t])] for t in range(1, labels.shape[1]) if labels[b, t] != IGNORE
    ]
    return sum(terms) / len(terms)


def _hand_kl(current, reference, labels, b):
    terms = []
    for t in range(1, labels.shape[1]):
        if labels[b, t] == IGNORE:
            continue
        p, q = _log_softmax(reference[b, t - 1]), _log_softmax(current[b, t - 1])
        terms.append(sum(math.exp(pi) * (pi - qi) for pi, qi in zip(p, q)))
    return sum(terms) / len(terms)


def _loss(name, forget, retain=None):
    """The method's whole loss with its default parameters (forget term + retain term)."""
    method, params = get_method(name), get_method(name).Params()
    loss = method.forget_loss(forget, params)
    return loss + method.retain_loss(retain, params) if method.retain else loss


def test_registry_has_the_paper_methods_and_their_seven_baseline_rows():
    assert {"ga", "random_label", "adversarial", "ga_gd", "ga_kl", "memflex"} <= set(method_names())
    rows = ["ga", "random_label", "adversarial", "ga_gd", "ga_gd_ood", "ga_kl", "ga_kl_ood"]
    assert [check_label(RunLabel.parse(row)).name for row in rows] == [
        "ga",
        "random_label",
        "adversarial",
        "ga_gd",
        "ga_gd",
        "ga_kl",
        "ga_kl",
    ]
    with pytest.raises(KnowUndoError, match="unknown method 'npo2'"):
        get_method("npo2")
    with pytest.raises(KnowUndoError, match="no out-of-distribution variant"):
        check_label(RunLabel.parse("ga_ood"))
    with pytest.raises(KnowUndoError, match="trains inside its own region"):
        check_label(RunLabel.parse("memflex@memflex"))


def test_method_parameters_are_typed_and_checked():
    assert method_params({"adversarial": {"top_k": 3}}, "adversarial").top_k == 3
    assert method_params({}, "memflex").forget_weight == -0.4
    with pytest.raises(KnowUndoError, match=r"did you mean 'unlearn.method_args.adversarial.top_k'"):
        method_params({"adversarial": {"top_kk": 3}}, "adversarial")
    with pytest.raises(KnowUndoError, match="expects int"):
        method_params({"adversarial": {"top_k": "many"}}, "adversarial")
    with pytest.raises(KnowUndoError, match="top_k must be >= 1"):
        method_params({"adversarial": {"top_k": 0}}, "adversarial")
    with pytest.raises(KnowUndoError, match="unknown method 'adversarail'; did you mean 'adversarial'"):
        method_params({"adversarail": {"top_k": 3}}, "ga")
    # a parameter whose default is None takes its type from the annotation
    assert method_params({"rmu": {"layer": 3}}, "rmu").layer == 3
    with pytest.raises(KnowUndoError, match="expects int"):
        method_params({"rmu": {"layer": "top"}}, "rmu")
    # a row label's entry applies over its method's
    assert (
        method_params(
            {"ga_gd": {"retain_weight": 2.0}, "ga_gd@memflex": {"retain_weight": 3.0}}, "ga_gd", "ga_gd@memflex"
        ).retain_weight
        == 3.0
    )


def test_weighted_nll_matches_hand_computation_sign_mask_and_weights():
    weight = torch.tensor([-1.0, 0.5])
    expected = (-1.0 * _hand_nll(LOGITS, LABELS, 0) + 0.5 * _hand_nll(LOGITS, LABELS, 1)) / 2
    assert weighted_nll(Side(LOGITS, LABELS, weight)).item() == pytest.approx(expected, rel=1e-5)


def test_ga_ga_gd_and_memflex_losses():
    forget = Side(LOGITS, LABELS, torch.full((2,), get_method("ga").Params().forget_weight))
    retain = Side(REF, LABELS, torch.full((2,), get_method("ga_gd").Params().retain_weight))
    ga = -(_hand_nll(LOGITS, LABELS, 0) + _hand_nll(LOGITS, LABELS, 1)) / 2
    gd = (_hand_nll(REF, LABELS, 0) + _hand_nll(REF, LABELS, 1)) / 2
    assert _loss("ga", forget).item() == pytest.approx(ga, rel=1e-5)
    assert _loss("ga_gd", forget, retain).item() == pytest.approx(ga + gd, rel=1e-5)
    memflex = get_method("memflex").Params()
    weighted = (
        Side(LOGITS, LABELS, torch.full((2,), memflex.forget_weight)),
        Side(REF, LABELS, torch.full((2,), memflex.retain_weight)),
    )
    assert _loss("memflex", *weighted).item() == pytest.approx(0.4 * ga + 2.0 * gd, rel=1e-5)


def test_ga_kl_uses_answer_tokens_only():
    forget = Side(LOGITS, LABELS, torch.full((2,), -1.0))
    retain = Side(LOGITS, LABELS, torch.ones(2), reference_logits=REF)
    kl = (_hand_kl(LOGITS, REF, LABELS, 0) + _hand_kl(LOGITS, REF, LABELS, 1)) / 2
    ga = -(_hand_nll(LOGITS, LABELS, 0) + _hand_nll(LOGITS, LABELS, 1)) / 2
    assert _loss("ga_kl", forget, retain).item() == pytest.approx(ga + kl, rel=1e-5)
    # changing the reference at prompt/padding positions changes nothing
    noisy = REF.clone()
    noisy[0, 3] += 100  # position 3 of sample 0 predicts nothing (past the answer)
    noisy[1, 0] += 100  # position 0 of sample 1 predicts a prompt token
    assert weighted_answer_kl(Side(LOGITS, LABELS, torch.ones(2), noisy)).item() == pytest.approx(kl, rel=1e-5)
    with pytest.raises(KnowUndoError, match="needs reference_logits"):
        weighted_answer_kl(Side(LOGITS, LABELS, torch.ones(2)))


# a batch with answers of different lengths (3 and 1 tokens), a prompt and a padded position
LONG_LABELS = torch.tensor([[IGNORE, 2, 3, 1, IGNORE], [IGNORE, IGNORE, IGNORE, 4, IGNORE]])
CURRENT = torch.randn(2, 5, VOCAB)
FROZEN = torch.randn(2, 5, VOCAB)


def _hand_tokens(logits, labels, b):
    """log p(gold) at each answer position of sample b (position t - 1 predicts token t)."""
    return [
        _log_softmax(logits[b, t - 1])[int(labels[b, t])] for t in range(1, labels.shape[1]) if labels[b, t] != IGNORE
    ]


def _hand_logsigmoid(x):
    return -math.log1p(math.exp(-x))


def _noisy(logits):
    """The same logits with noise where no answer token is predicted (prompt and padding): must not matter."""
    noisy = logits.clone()
    noisy[0, 3:] += 50.0  # position 3 predicts padding, position 4 nothing
    noisy[1, :2] -= 50.0  # positions 0, 1 predict prompt tokens
    return noisy


def _params(name, **values):
    return method_params({name: values}, name)


def _forget(name, logits=CURRENT, **extra):
    params = get_method(name).Params()
    return Side(logits, LONG_LABELS, torch.full((2,), params.forget_weight), **extra)


def test_npo_forget_loss_by_hand_and_answer_tokens_only():
    params = _params("npo", beta=0.5)
    expected = 0.0
    for b in range(2):
        delta = sum(_hand_tokens(CURRENT, LONG_LABELS, b)) - sum(_hand_tokens(FROZEN, LONG_LABELS, b))
        expected += -(2 / 0.5) * _hand_logsigmoid(-0.5 * delta) / 2
    npo = get_method("npo")
    assert npo.forget_loss(_forget("npo", reference_logits=FROZEN), params).item() == pytest.approx(expected, rel=1e-5)
    noisy = _forget("npo", _noisy(CURRENT), reference_logits=_noisy(FROZEN))
    assert npo.forget_loss(noisy, params).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(KnowUndoError, match="needs reference_logits"):
        npo.forget_loss(_forget("npo"), params)
    assert npo.reference_sides(params) == {"forget"}
    assert npo.reference_sides(_params("npo", retain_loss="kl")) == {"forget", "retain"}
    with pytest.raises(KnowUndoError, match="retain_loss must be nll or kl"):
        _params("npo", retain_loss="l2")


def test_npo_gradient_at_the_reference_equals_ascent_on_the_summed_answer_nll():
    """dL/dΔ = 2σ(βΔ) = 1 at Δ = 0: NPO's first step is gradient ascent on the summed (not averaged) NLL."""
    logits = CURRENT.clone().requires_grad_(True)
    npo = get_method("npo")
    npo.forget_loss(Side(logits, LONG_LABELS, torch.ones(2), reference_logits=CURRENT), npo.Params()).backward()
    npo_grad = logits.grad.clone()
    logits.grad = None
    from knowundo.methods.losses import sequence_logprob

    summed_logprob, _ = sequence_logprob(logits, LONG_LABELS)
    summed_logprob.mean().backward()  # the loss of ascent on the summed NLL: -mean_i NLL_sum,i = mean_i log p(y_i)
    assert torch.allclose(npo_grad, logits.grad, atol=1e-6) and logits.grad.abs().sum() > 0


def test_simnpo_by_hand_and_like_length_normalised_ga_as_beta_vanishes():
    params = _params("simnpo", beta=2.0, delta=0.5)
    expected = 0.0
    for b in range(2):
        tokens = _hand_tokens(CURRENT, LONG_LABELS, b)
        expected += -(2 / 2.0) * _hand_logsigmoid(-2.0 * sum(tokens) / len(tokens) - 0.5) / 2
    simnpo = get_method("simnpo")
    assert simnpo.forget_loss(_forget("simnpo"), params).item() == pytest.approx(expected, rel=1e-5)
    assert simnpo.forget_loss(_forget("simnpo", _noisy(CURRENT)), params).item() == pytest.approx(expected, rel=1e-5)
    # no margin, beta -> 0: the gradient of length-normalised gradient ascent (direction and size)
    logits = CURRENT.clone().requires_grad_(True)
    simnpo.forget_loss(Side(logits, LONG_LABELS, torch.ones(2)), _params("simnpo", beta=1e-4)).backward()
    simnpo_grad = logits.grad.clone()
    logits.grad = None
    weighted_nll(Side(logits, LONG_LABELS, -torch.ones(2))).backward()
    cosine = torch.nn.functional.cosine_similarity(simnpo_grad.flatten(), logits.grad.flatten(), dim=0)
    assert cosine > 0.9999 and simnpo_grad.norm() / logits.grad.norm() == pytest.approx(1.0, rel=1e-3)


def test_idk_dpo_prefers_the_refusal_by_hand():
    refusal_labels = torch.tensor([[IGNORE, 1, 0, IGNORE, IGNORE], [IGNORE, IGNORE, IGNORE, 2, 3]])
    refusal_logits, refusal_frozen = torch.randn(2, 5, VOCAB), torch.randn(2, 5, VOCAB)
    alternative = Side(refusal_logits, refusal_labels, torch.ones(2), reference_logits=refusal_frozen)
    params = _params("idk_dpo", beta=0.3)
    expected = 0.0
    for b in range(2):
        win = sum(_hand_tokens(refusal_logits, refusal_labels, b)) - sum(
            _hand_tokens(refusal_frozen, refusal_labels, b)
        )
        lose = sum(_hand_tokens(CURRENT, LONG_LABELS, b)) - sum(_hand_tokens(FROZEN, LONG_LABELS, b))
        expected += -_hand_logsigmoid(0.3 * (win - lose)) / 2
    forget = _forget("idk_dpo", reference_logits=FROZEN, alternative=alternative)
    assert get_method("idk_dpo").forget_loss(forget, params).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(KnowUndoError, match="needs alternative"):
        get_method("idk_dpo").forget_loss(_forget("idk_dpo", reference_logits=FROZEN), params)


def test_undial_distils_toward_the_reference_with_the_gold_token_lowered():
    params = _params("undial", beta=3.0)
    expected = 0.0
    for b in range(2):
        terms = []
        for t in range(1, 5):
            if LONG_LABELS[b, t] == IGNORE:
                continue
            target = [float(v) for v in FROZEN[b, t - 1]]
            target[int(LONG_LABELS[b, t])] -= 3.0
            p, q = _log_softmax(target), _log_softmax(CURRENT[b, t - 1])
            terms.append(sum(math.exp(pi) * (pi - qi) for pi, qi in zip(p, q)))
        expected += sum(terms) / len(terms) / 2
    undial = get_method("undial")
    assert undial.forget_loss(_forget("undial", reference_logits=FROZEN), params).item() == pytest.approx(
        expected, rel=1e-5
    )
    noisy = _forget("undial", _noisy(CURRENT), reference_logits=_noisy(FROZEN))
    assert undial.forget_loss(noisy, params).item() == pytest.approx(expected, rel=1e-5)


def test_wga_weights_each_token_by_its_detached_probability():
    params = _params("wga", beta=2.0)
    expected = 0.0
    for b in range(2):
        tokens = _hand_tokens(CURRENT, LONG_LABELS, b)
        expected += -1.0 * sum(math.exp(2.0 * lp) * -lp for lp in tokens) / len(tokens) / 2
    wga = get_method("wga")
    assert wga.forget_loss(_forget("wga"), params).item() == pytest.approx(expected, rel=1e-5)
    assert wga.forget_loss(_forget("wga", _noisy(CURRENT)), params).item() == pytest.approx(expected, rel=1e-5)
    # the weight is detached: the gradient is p^β times the gradient of the token's NLL, not of p^β · NLL
    one_token = torch.tensor([[IGNORE, 2, IGNORE]])
    logits = CURRENT[:1, :3].clone().requires_grad_(True)
    wga.forget_loss(Side(logits, one_token, torch.ones(1)), _params("wga", beta=1.0)).backward()
    p = math.exp(_hand_tokens(CURRENT[:1, :3], one_token, 0)[0])
    # with weight +1 the loss is p · NLL, p held fixed: d/dz_gold = -p (1 - p) (a free p would add p log p (1 - p))
    assert logits.grad[0, 0, 2].item() == pytest.approx(-p * (1 - p), rel=1e-4)


def test_idk_sft_is_descent_on_refusals_that_replace_the_answers(tiny_model):
    from knowundo.data.format import Formatter, encode_items
    from knowundo.data.relabel import RelabelContext, refusal_answers

    idk = get_method("idk_sft")
    forget = _forget("idk_sft")
    expected = sum(-sum(t) / len(t) for t in (_hand_tokens(CURRENT, LONG_LABELS, b) for b in range(2))) / 2
    assert idk.forget_loss(forget, idk.Params()).item() == pytest.approx(expected, rel=1e-5)
    # what it trains on: the refusals, drawn as refusal_answers draws them with the same seed
    tokenizer = tiny_model[1]
    features = encode_items(
        [{"text": "Who is the mother of Ann Vo?", "labels": "Di Ke."}] * 3, Formatter(tokenizer)
    ).features
    relabelled = idk.relabel(
        features, RelabelContext(None, Formatter(tokenizer), torch.Generator().manual_seed(3)), idk.Params()
    )
    assert relabelled == refusal_answers(
        features, RelabelContext(None, Formatter(tokenizer), torch.Generator().manual_seed(3))
    )
    assert relabelled != features


def test_rmu_steers_forget_answers_and_anchors_retain_answers_by_hand():
    hidden = 6
    config = type("Config", (), {"num_hidden_layers": 32, "hidden_size": hidden})()
    rmu = get_method("rmu")
    params = rmu.resolve(rmu.Params(), config)
    assert params.layer == 7 and params.steering_coeff == pytest.approx(6.5 * math.sqrt(hidden / 4096))
    states = tuple(torch.randn(2, 5, hidden) for _ in range(9))
    anchor = tuple(torch.randn(2, 5, hidden) for _ in range(9))
    u = rmu.tensors(params, config)["steering_vector"]
    assert u.norm().item() == pytest.approx(params.steering_coeff, rel=1e-5) and (u > 0).all()
    assert torch.equal(u, rmu.tensors(params, config)["steering_vector"])  # seeded: the same every time

    def hand(values, target):
        per_sample = []
        for b in range(2):  # the states that predict the answer tokens: position t - 1 for token t
            rows = [t - 1 for t in range(1, 5) if LONG_LABELS[b, t] != IGNORE]
            per_sample.append(
                sum(
                    float(((values[b, t] - target[b, t] if target.dim() == 3 else values[b, t] - target) ** 2).mean())
                    for t in rows
                )
                / len(rows)
            )
        return per_sample

    forget = Side(CURRENT, LONG_LABELS, torch.ones(2), hidden_states=states)
    assert rmu.forget_loss(forget, params).item() == pytest.approx(sum(hand(states[8], u)) / 2, rel=1e-5)
    retain = Side(
        CURRENT,
        LONG_LABELS,
        torch.full((2,), params.retain_weight),
        hidden_states=states,
        reference_hidden_states=anchor,
    )
    expected = params.retain_weight * sum(hand(states[8], anchor[8])) / 2
    assert rmu.retain_loss(retain, params).item() == pytest.approx(expected, rel=1e-5)
    tiny = rmu.resolve(rmu.Params(), type("Config", (), {"num_hidden_layers": 2, "hidden_size": 128})())
    assert tiny.layer == 0
    with pytest.raises(KnowUndoError, match="the model has 2 layers"):
        rmu.resolve(_params("rmu", layer=5), type("Config", (), {"num_hidden_layers": 2, "hidden_size": 128})())
