"""The unlearning stage on the micro tiny model: relabelling, the trainer's checks, KL reference, outputs."""

import json

import pytest
import torch
from safetensors.torch import load_file

from knowundo.cli import main
from knowundo.data.format import IGNORE, Formatter, encode_items
from knowundo.data.knowundo import DataSource, load_domain
from knowundo.errors import KnowUndoError
from knowundo.methods import RelabelContext, get_method
from knowundo.methods.relabel import adversarial_labels, random_labels
from knowundo.unlearn import REFERENCE, PairCollator, PairedDataset, UnlearnTrainer, prepare_model
from tests.conftest import MICRO

SHORT = [*MICRO, "unlearn.epochs=1", "unlearn.batch_size=4", "unlearn.grad_accum=2", "unlearn.save_steps=4"]


def _set(*pairs):
    return [arg for p in pairs for arg in ("--set", p)]


@pytest.fixture(scope="module")
def kl_model(micro_config, finetuned_privacy):
    cfg = micro_config()
    model, tok = prepare_model(cfg, finetuned_privacy / "adapter", get_method("ga_kl"), progress=False)
    items = load_domain(DataSource(), "privacy")
    formatter = Formatter(tok)
    return model, tok, encode_items(items["unlearn"]["train"][:8], formatter).features, \
        encode_items(items["retention"]["train"][:8], formatter).features


def test_adversarial_labels_are_never_gold_and_sit_at_the_gold_position(kl_model):
    model, tok, forget, _ = kl_model
    relabelled = adversarial_labels(forget, RelabelContext(model, tok, torch.Generator().manual_seed(0)))
    for before, after in zip(forget, relabelled):
        assert after["input_ids"] == before["input_ids"]
        for i, (gold, new) in enumerate(zip(before["labels"], after["labels"])):
            assert (gold == IGNORE) == (new == IGNORE)
            assert gold == IGNORE or gold != new
    # position i holds argmax_{a != gold} of the logits at i - 1 (the fine-tuned model's prediction of token i)
    f = forget[0]
    with torch.no_grad():
        model.eval()
        logits = model(input_ids=torch.tensor([f["input_ids"]])).logits[0].float()
    i = next(j for j, label in enumerate(f["labels"]) if label != IGNORE)
    scores = logits[i - 1].clone()
    scores[f["labels"][i]] = -torch.inf
    assert relabelled[0]["labels"][i] == int(scores.argmax())
    sampled = adversarial_labels(forget, RelabelContext(model, tok, torch.Generator().manual_seed(0), top_k=3))
    assert all(g == IGNORE or g != n for b, a in zip(forget, sampled) for g, n in zip(b["labels"], a["labels"]))


def test_random_labels_keep_the_prompt_masked_and_use_no_special_token(kl_model):
    _, tok, forget, _ = kl_model
    relabelled = random_labels(forget, RelabelContext(None, tok, torch.Generator().manual_seed(0)))
    special = set(tok.all_special_ids)
    changed = 0
    for before, after in zip(forget, relabelled):
        for gold, new in zip(before["labels"], after["labels"]):
            assert (gold == IGNORE) == (new == IGNORE)
            if new != IGNORE:
                assert new not in special
                changed += gold != new
    assert changed > 0.9 * sum(label != IGNORE for f in forget for label in f["labels"])


def _batch(method, forget, retain, tok):
    data = PairedDataset(forget, retain, method, seed=0)
    return PairCollator(tok.pad_token_id)([data[i] for i in range(4)])


def _trainer(model, method, tmp_path):
    from transformers import TrainingArguments

    return UnlearnTrainer(model=model, args=TrainingArguments(str(tmp_path), report_to="none"), method=method)


def test_kl_is_zero_before_the_first_step_and_the_reference_is_frozen(kl_model, tmp_path):
    model, tok, forget, retain = kl_model
    method = get_method("ga_kl")
    trainer = _trainer(model, method, tmp_path)
    batch = _batch(method, forget, retain, tok)["retain"]
    side = trainer._side(model, batch, reference=True)
    from knowundo.methods.base import weighted_answer_kl

    assert abs(weighted_answer_kl(side).item()) < 1e-6
    assert not any(p.requires_grad for n, p in model.named_parameters() if f".{REFERENCE}." in n)
    assert any(p.requires_grad for n, p in model.named_parameters() if ".default." in n)


def test_missing_weight_or_empty_forget_batch_raises(kl_model, tmp_path):
    model, tok, forget, retain = kl_model
    method = get_method("ga_gd")
    trainer = _trainer(model, method, tmp_path)
    batch = _batch(method, forget, retain, tok)
    no_weight = {**batch, "retain": {k: v for k, v in batch["retain"].items() if k != "weight"}}
    with pytest.raises(KnowUndoError, match="'retain' batch has no per-sample weight"):
        trainer.compute_loss(model, no_weight)
    empty = {**batch, "forget": {k: v[:0] for k, v in batch["forget"].items()}}
    with pytest.raises(KnowUndoError, match="'forget' batch is empty"):
        trainer.compute_loss(model, empty)
    with pytest.raises(KnowUndoError, match="no 'retain' side"):
        trainer.compute_loss(model, {"forget": batch["forget"]})


def test_unlearn_command_trains_saves_checkpoints_and_record(finetuned_privacy, tmp_path, capsys):
    out = tmp_path / "ga_gd"
    assert main(["unlearn", "--domain", "privacy", "--method", "ga_gd", "--finetuned", str(finetuned_privacy),
                 "--out", str(out), *_set(*SHORT)]) == 0
    record = json.loads((out / "unlearn.json").read_text())
    assert record["steps"] == 40 and record["retain"] == "retention" and record["stopped_early"] is None
    assert record["checkpoints"][:2] == ["checkpoint-4", "checkpoint-8"]
    assert (out / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors").is_file()
    before = load_file(finetuned_privacy / "adapter" / "adapter_model.safetensors")
    after = load_file(out / "adapter" / "adapter_model.safetensors")
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
    assert not (tmp_path / "ga_gd.partial").exists()
    assert "unlearned privacy with ga_gd + retention retain data" in capsys.readouterr().out


def test_non_finite_loss_stops_cleanly_and_keeps_the_last_good_weights(finetuned_privacy, tmp_path, monkeypatch):
    from knowundo.methods import METHODS
    from knowundo.methods.base import Method, weighted_nll

    calls = {"n": 0}

    def exploding(forget, retain):
        calls["n"] += 1
        loss = weighted_nll(forget)
        return loss * torch.inf if calls["n"] > 6 else loss

    monkeypatch.setitem(METHODS, "exploding", Method("exploding", exploding, forget_weight=-1.0))
    out = tmp_path / "boom"
    assert main(["unlearn", "--domain", "privacy", "--method", "exploding", "--finetuned", str(finetuned_privacy),
                 "--out", str(out), *_set(*SHORT)]) == 0
    record = json.loads((out / "unlearn.json").read_text())
    assert record["stopped_early"]["step"] == 3  # 6 good micro-batches = 3 optimizer steps of 2
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_general_flag_needs_a_method_with_retain_data(finetuned_privacy, tmp_path, capsys):
    code = main(["unlearn", "--domain", "privacy", "--method", "ga", "--general", "--finetuned",
                 str(finetuned_privacy), "--out", str(tmp_path / "x"), *_set(*SHORT)])
    err = capsys.readouterr().err
    assert code == 2 and "uses none" in err and err.count("\n") == 1
