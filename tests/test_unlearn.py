"""The unlearning stage on the micro tiny model: relabelling, the trainer's checks, KL reference, outputs."""

import json

import pytest
import torch
from safetensors.torch import load_file

from knowundo.cli import main
from knowundo.data.format import IGNORE, Formatter, encode_items
from knowundo.data.knowundo import DataSource, load_domain
from knowundo.data.relabel import RelabelContext, adversarial_labels, random_labels
from knowundo.errors import KnowUndoError
from knowundo.methods import get_method
from knowundo.unlearn import REFERENCE, PairCollator, PairedDataset, UnlearnTrainer, prepare_model
from tests.conftest import MICRO, sets

SHORT = [*MICRO, "unlearn.epochs=1", "unlearn.batch_size=4", "unlearn.grad_accum=2", "unlearn.save_steps=4"]


@pytest.fixture(scope="module")
def kl_model(micro_config, finetuned_privacy):
    cfg = micro_config()
    model, tok, _ = prepare_model(cfg, finetuned_privacy / "adapter", with_reference=True)
    items = load_domain(DataSource(), "privacy")
    formatter = Formatter(tok)
    return (
        model,
        tok,
        encode_items(items["unlearn"]["train"][:8], formatter).features,
        encode_items(items["retention"]["train"][:8], formatter).features,
    )


def test_adversarial_labels_are_never_gold_and_sit_at_the_gold_position(kl_model):
    model, tok, forget, _ = kl_model
    relabelled = adversarial_labels(forget, RelabelContext(model, Formatter(tok), torch.Generator().manual_seed(0)))
    for before, after in zip(forget, relabelled):
        assert after["input_ids"] == before["input_ids"]
        for gold, new in zip(before["labels"], after["labels"]):
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
    sampled = adversarial_labels(
        forget, RelabelContext(model, Formatter(tok), torch.Generator().manual_seed(0)), top_k=3
    )
    assert all(g == IGNORE or g != n for b, a in zip(forget, sampled) for g, n in zip(b["labels"], a["labels"]))


def test_random_labels_keep_the_prompt_masked_and_use_no_special_token(kl_model):
    _, tok, forget, _ = kl_model
    relabelled = random_labels(forget, RelabelContext(None, Formatter(tok), torch.Generator().manual_seed(0)))
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
    data = PairedDataset(forget, retain, method.Params(), seed=0)
    return PairCollator(tok.pad_token_id)([data[i] for i in range(4)])


def _trainer(model, method, tmp_path):
    from transformers import TrainingArguments

    return UnlearnTrainer(
        model=model, args=TrainingArguments(str(tmp_path), report_to="none"), method=method, params=method.Params()
    )


def test_kl_is_zero_before_the_first_step_and_the_reference_is_frozen(kl_model, tmp_path):
    model, tok, forget, retain = kl_model
    method = get_method("ga_kl")
    trainer = _trainer(model, method, tmp_path)
    side = trainer._side(model, _batch(method, forget, retain, tok), "retain")
    from knowundo.methods.losses import weighted_answer_kl

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
    assert (
        main(
            [
                "unlearn",
                "--domain",
                "privacy",
                "--method",
                "ga_gd",
                "--finetuned",
                str(finetuned_privacy),
                "--out",
                str(out),
                *sets(*SHORT),
            ]
        )
        == 0
    )
    record = json.loads((out / "unlearn.json").read_text())
    assert record["steps"] == 40 and record["retain"] == "retention" and record["stopped_early"] is None
    assert record["checkpoints"][:2] == ["checkpoint-4", "checkpoint-8"]
    assert (out / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors").is_file()
    before = load_file(finetuned_privacy / "adapter" / "adapter_model.safetensors")
    after = load_file(out / "adapter" / "adapter_model.safetensors")
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
    assert not (tmp_path / "ga_gd.partial").exists()
    assert "unlearned privacy with ga_gd + retention retain data" in capsys.readouterr().out
    # another row's settings do not touch this row's key: the finished run is reused as it is
    before_record = (out / "unlearn.json").read_text()
    assert (
        main(
            [
                "unlearn",
                "--domain",
                "privacy",
                "--method",
                "ga_gd",
                "--finetuned",
                str(finetuned_privacy),
                "--out",
                str(out),
                *sets(*SHORT, "unlearn.per_method={npo: {learning_rate: 0.5}}", "unlearn.method_args.npo.beta=0.3"),
            ]
        )
        == 0
    )
    assert (out / "unlearn.json").read_text() == before_record


def test_non_finite_loss_stops_cleanly_and_keeps_the_last_good_weights(finetuned_privacy, tmp_path, monkeypatch):
    from knowundo.methods import METHODS, Method
    from knowundo.methods.losses import weighted_nll

    class Exploding(Method):
        name = "exploding"
        calls = 0

        def forget_loss(self, forget, params):
            Exploding.calls += 1
            loss = weighted_nll(forget)
            return loss * torch.inf if Exploding.calls > 6 else loss

    monkeypatch.setitem(METHODS, "exploding", Exploding())
    out = tmp_path / "boom"
    assert (
        main(
            [
                "unlearn",
                "--domain",
                "privacy",
                "--method",
                "exploding",
                "--finetuned",
                str(finetuned_privacy),
                "--out",
                str(out),
                *sets(*SHORT),
            ]
        )
        == 0
    )
    record = json.loads((out / "unlearn.json").read_text())
    assert record["stopped_early"]["step"] == 3  # 6 good micro-batches = 3 optimizer steps of 2
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_general_flag_needs_a_method_with_retain_data(finetuned_privacy, tmp_path, capsys):
    code = main(
        [
            "unlearn",
            "--domain",
            "privacy",
            "--method",
            "ga",
            "--general",
            "--finetuned",
            str(finetuned_privacy),
            "--out",
            str(tmp_path / "x"),
            *sets(*SHORT),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "uses no retain data" in err and err.count("\n") == 1


@pytest.mark.parametrize("name", ["ga_gd", "ga_kl", "memflex"])
def test_two_backward_passes_give_the_gradient_of_one_backward_of_the_sum(kl_model, tmp_path, name):
    """The forget term is backpropagated before the retain forward pass (memory); the gradients and the logged
    loss must equal one backward pass of forget + retain, with the accumulation scaling applied to both."""
    model, tok, forget, retain = kl_model
    method = get_method(name)
    trainer = _trainer(model, method, tmp_path)
    trainer.current_gradient_accumulation_steps = 2  # set by the training loop; 2 checks the scaling
    batch = _batch(method, forget, retain, tok)
    trained = [p for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    loss = trainer.compute_loss(model, batch)  # the forget term's backward pass happens in here
    (loss / 2).backward()  # what Trainer.training_step does with the returned loss
    split = [p.grad.clone() for p in trained]
    model.zero_grad()
    params = method.Params()
    whole = method.forget_loss(trainer._side(model, batch, "forget"), params) + method.retain_loss(
        trainer._side(model, batch, "retain"), params
    )
    (whole / 2).backward()
    assert loss.item() == pytest.approx(whole.item(), rel=1e-6)
    assert any(g.abs().sum() > 0 for g in split)
    for a, p in zip(split, trained):
        assert torch.allclose(a, p.grad, rtol=1e-5, atol=1e-8)
    model.zero_grad()


def test_idk_answers_come_only_from_the_refusal_list_with_the_question_untouched(kl_model):
    from knowundo.data.refusals import REFUSALS
    from knowundo.data.relabel import refusal_answers

    _, tok, forget, _ = kl_model
    formatter = Formatter(tok)
    relabelled = refusal_answers(forget, RelabelContext(None, formatter, torch.Generator().manual_seed(0)))
    chosen = set()
    for before, after in zip(forget, relabelled):
        start = before["labels"].index(next(label for label in before["labels"] if label != IGNORE))
        assert after["input_ids"][:start] == before["input_ids"][:start]  # the question is kept
        assert after["labels"][:start] == [IGNORE] * start and IGNORE not in after["labels"][start:]
        assert after["input_ids"][-1] == tok.eos_token_id
        answer = tok.decode(after["input_ids"][start:-1])
        assert answer in REFUSALS
        chosen.add(answer)
    assert len(chosen) > 1  # drawn, not one fixed refusal
    again = refusal_answers(forget, RelabelContext(None, formatter, torch.Generator().manual_seed(0)))
    other = refusal_answers(forget, RelabelContext(None, formatter, torch.Generator().manual_seed(1)))
    assert again == relabelled and other != relabelled


def test_method_parameters_reach_the_loss_and_the_record(finetuned_privacy, tmp_path, monkeypatch, capsys):
    npo = get_method("npo")
    seen = []
    original = type(npo).forget_loss
    monkeypatch.setattr(
        type(npo),
        "forget_loss",
        lambda self, forget, params: seen.append(params.beta) or original(self, forget, params),
    )
    out = tmp_path / "npo"
    assert (
        main(
            [
                "unlearn",
                "--domain",
                "privacy",
                "--method",
                "npo",
                "--finetuned",
                str(finetuned_privacy),
                "--out",
                str(out),
                *sets(*SHORT, "unlearn.method_args.npo.beta=0.5"),
            ]
        )
        == 0
    )
    record = json.loads((out / "unlearn.json").read_text())
    assert set(seen) == {0.5} and record["method_args"]["beta"] == 0.5 and record["label"] == "npo"
    capsys.readouterr()
    code = main(
        [
            "unlearn",
            "--domain",
            "privacy",
            "--method",
            "npo",
            "--finetuned",
            str(finetuned_privacy),
            "--out",
            str(tmp_path / "bad"),
            *sets(*SHORT, "unlearn.method_args.npo.bta=0.5"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "did you mean 'unlearn.method_args.npo.beta'" in err and err.count("\n") == 1
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow  # trainings (the fast suite stays under 2 minutes)
def test_rmu_records_its_steering_vector_and_trains_only_up_to_its_layer(finetuned_privacy, tmp_path):
    runs = []
    for name in ("first", "second"):
        out = tmp_path / name
        assert (
            main(
                [
                    "unlearn",
                    "--domain",
                    "privacy",
                    "--method",
                    "rmu",
                    "--finetuned",
                    str(finetuned_privacy),
                    "--out",
                    str(out),
                    *sets(*SHORT, "unlearn.grad_accum=8", "unlearn.save_steps=0"),
                ]
            )
            == 0
        )
        runs.append(out)
    record = json.loads((runs[0] / "unlearn.json").read_text())
    layer = record["method_args"]["layer"]
    assert layer == 0 and record["method_args"]["steering_coeff"] > 0  # resolved from the 2-layer tiny model
    vectors = [load_file(out / "method_tensors.safetensors")["steering_vector"] for out in runs]
    assert torch.equal(vectors[0], vectors[1]) and vectors[0].norm().item() == pytest.approx(
        record["method_args"]["steering_coeff"], rel=1e-5
    )
    before = load_file(finetuned_privacy / "adapter" / "adapter_model.safetensors")
    after = load_file(runs[0] / "adapter" / "adapter_model.safetensors")
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(".layers.0." in k for k in moved)
    assert all(torch.equal(before[k], after[k]) for k in before if f".layers.{layer}." not in k)


def test_unlearning_length_by_epochs_by_steps_or_raised_to_the_floor():
    from knowundo.config import UnlearnConfig
    from knowundo.unlearn import unlearning_length

    assert unlearning_length(UnlearnConfig(epochs=2), 80, 4) == {
        "steps": 40,
        "by": "epochs",
        "steps_per_epoch": 20,
        "epochs": 2.0,
    }
    assert unlearning_length(UnlearnConfig(epochs=2), 9, 4)["steps"] == 6  # Trainer's count: ceil(9 / 4) per epoch
    floor = unlearning_length(UnlearnConfig(epochs=2, min_steps=20), 9, 4)
    assert floor == {"steps": 20, "by": "min_steps", "steps_per_epoch": 3, "epochs": 20 / 3}
    assert unlearning_length(UnlearnConfig(steps=7, min_steps=5), 80, 4)["by"] == "steps"


@pytest.mark.slow  # trainings (the fast suite stays under 2 minutes)
def test_the_floor_of_steps_is_what_trains_and_is_recorded(finetuned_privacy, tmp_path):
    out = tmp_path / "ga"
    assert (
        main(
            [
                "unlearn",
                "--domain",
                "privacy",
                "--method",
                "ga",
                "--finetuned",
                str(finetuned_privacy),
                "--out",
                str(out),
                *sets(*SHORT, "unlearn.save_steps=0", "unlearn.min_steps=43"),
            ]
        )
        == 0
    )
    record = json.loads((out / "unlearn.json").read_text())  # 1 epoch of SHORT is 40 steps
    assert record["steps"] == 43 and record["length"] == {
        "steps": 43,
        "by": "min_steps",
        "steps_per_epoch": 40,
        "epochs": 43 / 40,
    }
