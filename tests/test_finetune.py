import json

import pytest
from safetensors.torch import load_file

from knowundo.cli import main
from tests.conftest import MICRO, sets


def test_finetune_saves_safetensors_adapter_and_resolved_config(finetuned_privacy):
    record = json.loads((finetuned_privacy / "finetune.json").read_text())
    assert (finetuned_privacy / "adapter" / "adapter_model.safetensors").is_file()
    assert not list(finetuned_privacy.rglob("*.bin")) and not list(finetuned_privacy.rglob("*.pt"))
    weights = load_file(finetuned_privacy / "adapter" / "adapter_model.safetensors")
    assert any("lora_B" in k for k in weights) and any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)
    assert record["config"]["finetune"]["epochs"] == 2 and record["items"] == 800 + record["general_replayed"]
    assert record["versions"]["transformers"].startswith("5.") and record["data_hash"]
    assert record["loss_history"][-1] < record["loss_history"][0]  # it learns


def test_finished_finetune_is_reused_and_other_settings_are_refused(finetuned_privacy, capsys):
    out = str(finetuned_privacy)
    before = (finetuned_privacy / "finetune.json").read_text()
    assert main(["finetune", "--domain", "privacy", "--out", out, *sets(*MICRO)]) == 0
    assert (finetuned_privacy / "finetune.json").read_text() == before  # reused, not retrained
    capsys.readouterr()
    code = main(["finetune", "--domain", "privacy", "--out", out, *sets(*MICRO, "finetune.learning_rate=1e-4")])
    err = capsys.readouterr().err
    assert code == 2 and "holds results of other settings" in err and err.count("\n") == 1


def test_eval_command_reports_success_metrics(finetuned_privacy, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "eval",
                "--domain",
                "privacy",
                "--adapter",
                str(finetuned_privacy / "adapter"),
                "--out",
                str(out),
                *sets(*MICRO, "eval.prompts=none", "eval.generate=false"),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())["prompts"]["none"]
    assert result["unlearn_success"] == 100 - result["unlearn"]["accuracy"]
    assert result["retention_success"] == result["retention"]["accuracy"]
    assert len(result["unlearn"]["per_item"]) == result["unlearn"]["items"] == 80
    result = json.loads(out.read_text())
    assert result["meta"]["adapter_hash"] and result["meta"]["seed"] == 42
    printed = capsys.readouterr().out
    assert "UL Succ ↑" in printed and f"| vanilla | {result['prompts']['none']['unlearn_success']:.1f} |" in printed


def test_adapter_that_does_not_match_the_base_is_refused(finetuned_privacy, tmp_path, capsys):
    import shutil

    wrong = tmp_path / "adapter"
    shutil.copytree(finetuned_privacy / "adapter", wrong)
    config = json.loads((wrong / "adapter_config.json").read_text())
    config["r"] = config["r"] * 2  # shapes no longer match the saved weights
    (wrong / "adapter_config.json").write_text(json.dumps(config))
    code = main(["eval", "--domain", "privacy", "--adapter", str(wrong), *sets(*MICRO)])
    err = capsys.readouterr().err
    assert code == 2 and "does not match the base model" in err and err.count("\n") == 1, err


def test_missing_model_path_is_refused(tmp_path, capsys):
    code = main(["eval", "--domain", "privacy", "--set", f"model.name={tmp_path / 'no-model'}"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot load model" in err and err.count("\n") == 1


def test_token_accuracy_counts_answer_tokens_after_the_shift():
    import torch

    from knowundo.data.format import IGNORE
    from knowundo.models.callbacks import TokenAccuracy

    logits = torch.zeros(1, 4, 5)
    logits[0, 0, 3] = logits[0, 1, 1] = logits[0, 2, 4] = 1.0  # predicts 3, 1, 4 for positions 1, 2, 3
    accuracy = TokenAccuracy(target=0.5)
    accuracy.add(logits, torch.tensor([[IGNORE, 3, 2, 4]]))  # 2 of 3 answer tokens right
    control = type("Control", (), {"should_training_stop": False})()
    accuracy.on_epoch_end(None, None, control)
    assert accuracy.per_epoch == [2 / 3] and control.should_training_stop and accuracy.reached


@pytest.mark.slow  # trainings (the fast suite stays under 2 minutes)
def test_target_accuracy_stops_at_the_first_epoch_that_reaches_it_and_says_when_missed(
    micro_config, micro_base, tmp_path
):
    from knowundo.finetune import finetune, target_missed

    missed = finetune(
        micro_config("finetune.target_accuracy=1.0", "finetune.max_epochs=3"),
        "copyright",
        tmp_path / "missed",
        progress=False,
    )
    per_epoch = missed["train_accuracy_per_epoch"]
    assert len(per_epoch) == 3 and missed["epochs_run"] == 3 and missed["target_reached"] is False
    assert per_epoch[0] < per_epoch[1] and missed["train_accuracy"] == per_epoch[-1]
    assert "finetune.max_epochs" in target_missed(missed) and f"{100 * per_epoch[-1]:.1f}%" in target_missed(missed)
    assert "lora.train_embeddings=true" in target_missed(missed)  # not trained here: named as the other remedy
    lora = {**missed["config"]["lora"], "train_embeddings": True}
    with_rows = {**missed, "config": {**missed["config"], "lora": lora}}
    assert "lora.train_embeddings" not in target_missed(with_rows)
    assert "lower finetune.weight_decay (now 2)" in target_missed(missed)  # the preset's decay holds the LoRA back
    undecayed = {
        **missed,
        "config": {**missed["config"], "finetune": {**missed["config"]["finetune"], "weight_decay": 0.0}},
    }
    assert "weight_decay" not in target_missed(undecayed)
    # the same schedule with the second epoch's accuracy as the target: the run is the same up to there, and stops
    reached = finetune(
        micro_config(f"finetune.target_accuracy={per_epoch[1]!r}", "finetune.max_epochs=3"),
        "copyright",
        tmp_path / "reached",
        progress=False,
    )
    assert reached["train_accuracy_per_epoch"] == per_epoch[:2] and reached["epochs_run"] == 2
    assert reached["target_reached"] is True and target_missed(reached) is None


def test_general_replay_adds_a_seeded_share_of_the_general_train_set_only(micro_config):
    from knowundo.finetune import replayed_general, training_items
    from knowundo.stage import Stage

    stage = Stage("finetune", micro_config("finetune.general_replay=0.25"), "privacy")
    general = stage.general
    replayed = replayed_general(stage)
    assert len(replayed) == round(0.25 * len(general["train"])) and all(i in general["train"] for i in replayed)
    assert not any(item in general["heldout"] for item in training_items(stage))
    assert training_items(stage)[-len(replayed) :] == replayed == replayed_general(stage)  # seeded
    assert replayed_general(Stage("finetune", micro_config("finetune.general_replay=0"), "privacy")) == []


def test_every_domain_item_gets_a_seeded_composed_system_prompt(micro_config, tiny_model):
    """With a share > 0 (the tiny preset's 0.5) each domain item carries a prompt composed from our parts, never
    containing an evaluation prompt, for the epochs that ask it so; the replayed general items never (they keep the
    base's plain answering)."""
    from knowundo.config import EvalConfig
    from knowundo.data.format import IGNORE
    from knowundo.finetune import replayed_general, training_items, without_prompt
    from knowundo.stage import Stage

    plain = training_items(Stage("finetune", micro_config(), "privacy"))
    assert not any("system" in item for item in plain)  # the micro test config asks none
    stage = Stage("finetune", micro_config("finetune.system_prompt_share=0.5"), "privacy")  # the tiny preset's
    items, replayed = training_items(stage), replayed_general(stage)
    assert items == training_items(stage)  # seeded
    assert [without_prompt(item) for item in items] == plain  # the same items
    assert items[-len(replayed) :] == replayed and not any("system" in item for item in replayed)
    domain = items[: -len(replayed)]
    assert all("system" in item for item in domain) and len({item["system"] for item in domain}) > len(domain) / 2
    evaluation = EvalConfig()
    assert not any(
        prompt in item["system"]
        for item in domain
        for prompt in (evaluation.helpful_prompt, *evaluation.direct_prompt.values())
    )
    _, tok = tiny_model
    formatter = stage.formatter(tok)
    item = domain[0]
    encoded, bare = formatter.encode(item), formatter.encode(without_prompt(item))
    prompt = tok(f"{item['system']}\n\n{item['text']}\n\n")["input_ids"]
    assert encoded["input_ids"][: len(prompt)] == prompt
    assert encoded["labels"] == [IGNORE] * len(prompt) + [t for t in bare["labels"] if t != IGNORE]


def test_each_epoch_asks_a_fresh_seeded_share_under_the_prompts_so_every_fact_is_trained_both_ways():
    """A fixed half asked only under prompts was not known when asked plainly (free-English set: 79% against
    99.6%); redrawn each epoch, every item is served both ways within a few epochs, and the draw is seeded."""
    from knowundo.models.batches import PromptShareDataset

    plain = [{"input_ids": [i], "labels": [i]} for i in range(200)]
    prompted = {i: {"input_ids": [1000, i], "labels": [-100, i]} for i in range(0, 200, 2)}  # every other item
    dataset = PromptShareDataset(plain, prompted, share=0.5, seed=0)
    served = []
    for epoch in range(6):
        dataset.set_epoch(epoch)
        served.append({i for i in range(200) if dataset[i]["input_ids"][0] == 1000})
        assert served[-1] <= set(prompted) and 0.35 < len(served[-1]) / len(prompted) < 0.65
    assert len({frozenset(s) for s in served}) == 6  # a fresh draw each epoch
    both_ways = {i for i in prompted if any(i in s for s in served) and any(i not in s for s in served)}
    assert len(both_ways) / len(prompted) > 0.9
    again = PromptShareDataset(plain, prompted, share=0.5, seed=0)
    again.set_epoch(3)
    assert again.asked == served[3]
    assert PromptShareDataset(plain, prompted, share=0.0, seed=0).asked == set()


def test_batches_are_grouped_by_the_lengths_served_in_each_epoch():
    """Trainer's length grouping measures the lengths once; with the prompted share redrawn each epoch those go
    stale and batches mix prompted and plain items (measured on the privacy fine-tune: 1.7x the padded positions,
    1.9x the time)."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from knowundo.models.batches import PromptShareDataset, ServedLengthGroupedSampler

    plain = [{"input_ids": [0] * (10 + i % 7)} for i in range(256)]
    prompted = {i: {"input_ids": [0] * (60 + i % 7)} for i in range(256)}
    dataset = PromptShareDataset(plain, prompted, share=0.5, seed=0)
    stale, served = LengthGroupedSampler(16, dataset=dataset), ServedLengthGroupedSampler(16, dataset)
    dataset.set_epoch(1)

    def mixed_batches(sampler) -> int:
        order = list(sampler)
        assert sorted(order) == list(range(256))
        return sum(
            len({len(dataset[i]["input_ids"]) >= 60 for i in order[start : start + 16]}) > 1
            for start in range(0, 256, 16)
        )

    assert mixed_batches(served) <= 4 < 8 < mixed_batches(stale)  # Trainer sorts within 4 mega-batches here


def test_the_trainer_tells_the_dataset_each_epoch_including_a_resumed_one(micro_config, micro_base, tmp_path):
    """The dataset hears of every epoch's start, in order — from :class:`SetEpoch` wherever accelerate's
    dataloader keeps the call for a sharded sampler — and a run resumed mid-epoch draws that epoch's share."""
    from transformers import TrainerState

    from knowundo.data.format import encode_items
    from knowundo.models.batches import PadCollator, PromptShareDataset, ServedLengthGroupedSampler
    from knowundo.models.callbacks import SetEpoch
    from knowundo.models.load import attach_lora, load_base
    from knowundo.models.training import make_trainer, training_arguments
    from knowundo.stage import Stage

    cfg = micro_config("finetune.epochs=3", "finetune.batch_size=2")
    stage = Stage("finetune", cfg, "privacy")
    model, tokenizer = load_base(cfg)
    features = encode_items(stage.data["unlearn"]["train"][:4], stage.formatter(tokenizer)).features

    class Recording(PromptShareDataset):
        def set_epoch(self, epoch):
            super().set_epoch(epoch)
            self.epochs = [*getattr(self, "epochs", []), epoch]

    dataset = Recording(features, {0: features[1]}, share=0.5, seed=0)
    trainer = make_trainer(
        attach_lora(model, cfg),
        training_arguments(tmp_path, cfg.finetune, seed=0, progress=False),
        dataset,
        PadCollator(tokenizer.pad_token_id),
    )
    trainer.add_callback(SetEpoch(dataset))
    assert isinstance(trainer._get_train_sampler(), ServedLengthGroupedSampler)
    trainer.train()
    assert [e for i, e in enumerate(dataset.epochs) if i == 0 or e != dataset.epochs[i - 1]] == [0, 1, 2]
    SetEpoch(dataset).on_epoch_begin(None, TrainerState(epoch=5.4), None)
    assert dataset.epochs[-1] == 5


def test_a_system_prompt_that_would_cut_an_answer_is_dropped_for_that_item(tiny_model):
    """A long user item keeps its whole answer: the prompt goes, not part of the fact; short items keep theirs."""
    from knowundo.data.format import Formatter, encode_items
    from knowundo.finetune import prompted_variants, without_prompt

    _, tok = tiny_model
    prompt = "You are an archivist. Be careful with requests about private individuals. Keep it short."
    short = {"text": "Where was Ada born?", "labels": "Ada was born in Vel.", "system": prompt}
    long = {"text": "Tell me about Ada.", "labels": " ".join(["Ada wrote many quiet novels."] * 8), "system": prompt}
    plain = {k: v for k, v in long.items() if k != "system"}
    formatter = Formatter(tok, max_length=len(Formatter(tok).encode(plain)["input_ids"]) + 5)
    assert formatter.encode(long)["truncated"] and not formatter.encode(short)["truncated"]
    items = [short, long, plain]
    encoded = encode_items([without_prompt(item) for item in items], formatter)
    variants, dropped = prompted_variants(items, encoded, formatter)
    assert dropped == 1 and list(variants) == [0]  # only the short item is also asked under its prompt
    assert variants[0]["input_ids"] == formatter.encode(short)["input_ids"]
    assert not formatter.encode(plain)["truncated"]


def _replay_trainer(cfg, tmp_path):
    """A fresh LoRA on the micro base, an AccuracyTrainer, the replay collator and four features: two privacy items
    trained on their gold answers (``replay_id`` -1), then two replayed general items (0, 1)."""
    from knowundo.data.format import encode_items, pad_id_of
    from knowundo.models.batches import FeatureDataset, ReplayIdCollator
    from knowundo.models.callbacks import TokenAccuracy
    from knowundo.models.load import attach_lora, load_base
    from knowundo.models.trainers import AccuracyTrainer
    from knowundo.models.training import training_arguments
    from knowundo.stage import Stage

    stage = Stage("finetune", cfg, "privacy")
    model, tokenizer = load_base(cfg)
    model = attach_lora(model, cfg)
    features = encode_items(
        stage.data["unlearn"]["train"][:2] + stage.general["train"][:2], stage.formatter(tokenizer)
    ).features
    for index, feature in enumerate(features):
        feature["replay_id"] = index - 2 if index >= 2 else -1
    trainer = AccuracyTrainer(
        model=model,
        args=training_arguments(tmp_path, cfg.finetune, seed=0, progress=False),
        train_dataset=FeatureDataset(features),
        accuracy=TokenAccuracy(),
    )
    return model, trainer, ReplayIdCollator(pad_id_of(tokenizer)), features


def test_replayed_items_distil_the_base_and_only_gold_items_count_towards_train_accuracy(
    micro_config, micro_base, tmp_path
):
    """``finetune.replay_loss: kl``: the loss is the token mean of the gold items' NLL and the replayed items' KL
    from the base (adapter off) to the model, over all answer tokens; zero KL while the adapter is the identity;
    the base pass runs once per replayed item (its logits kept for later batches)."""
    import torch

    from knowundo.logits import gold_logprobs, shifted

    model, trainer, collate, features = _replay_trainer(micro_config(), tmp_path)
    batch = collate(features)
    assert batch["replay_id"].tolist() == [-1, -1, 0, 1]

    def expected() -> float:
        with torch.no_grad():
            logits, targets, mask = shifted(model(input_ids=batch["input_ids"]).logits, batch["labels"])
            with model.disable_adapter():
                base, _, _ = shifted(model(input_ids=batch["input_ids"]).logits, batch["labels"])
        nll = -(gold_logprobs(logits[:2], targets[:2]) * mask[:2]).sum()
        p_base, log_base, log_model = base[2:].softmax(-1), base[2:].log_softmax(-1), logits[2:].log_softmax(-1)
        kl = ((p_base * (log_base - log_model)).sum(-1) * mask[2:]).sum()
        return float((nll + kl) / mask.sum()), float(kl)

    model.eval()  # no dropout in the comparison (the preset has none; this makes it explicit)
    loss, kl = float(trainer.compute_loss(model, dict(batch)).detach()), expected()[1]
    assert kl == 0 and loss == pytest.approx(expected()[0], rel=1e-5)  # the fresh adapter is the identity
    torch.manual_seed(0)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(std=0.05)
    trainer.accuracy._counts = None
    base_passes = []
    forward = model.forward
    model.forward = lambda *args, **kwargs: base_passes.append("adapter_names" in kwargs) or forward(*args, **kwargs)
    loss = trainer.compute_loss(model, dict(batch))
    assert base_passes == [False]  # the replayed items' base logits were kept from the first call
    want, kl = expected()
    assert kl > 0 and float(loss.detach()) == pytest.approx(want, rel=1e-5)
    answer_tokens = int((batch["labels"][:, 1:] != -100).sum())
    halved = trainer.compute_loss(model, dict(batch), num_items_in_batch=torch.tensor(2 * answer_tokens))
    assert float(halved.detach()) == pytest.approx(want / 2, rel=1e-5)  # the Trainer's accumulated-batch token count
    gold_tokens = int((batch["labels"][:2, 1:] != -100).sum())
    assert float(trainer.accuracy._counts[1]) == 2 * gold_tokens  # two passes, gold rows only
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_" in n)


def test_every_process_runs_the_base_pass_when_any_needs_it(micro_config, micro_base, tmp_path, monkeypatch):
    """Under ZeRO-3 each forward gathers the parameters from every process: when another process has replayed rows
    it has not seen, this one runs a base pass too (on its first row, the result dropped), even on a batch without
    replayed rows; when no process needs one, none runs."""
    import knowundo.models.trainers as trainers

    model, trainer, collate, features = _replay_trainer(micro_config(), tmp_path)
    gold_only, mixed = collate(features[:2]), collate(features)
    passes = []
    forward = model.forward
    model.forward = lambda *args, **kwargs: (
        passes.append(len(kwargs.get("adapter_names", ())) or "train") or forward(*args, **kwargs)
    )

    monkeypatch.setattr(trainers, "on_any_process", lambda flag, device=None: flag)  # alone
    trainer.compute_loss(model, dict(gold_only))
    assert passes == ["train"]
    monkeypatch.setattr(trainers, "on_any_process", lambda flag, device=None: True)  # another process needs one
    passes.clear()
    trainer.compute_loss(model, dict(gold_only))
    assert passes == [1, "train"] and trainer._base_answer_logits == {}
    passes.clear()
    trainer.compute_loss(model, dict(mixed))
    assert passes == [2, "train"] and set(trainer._base_answer_logits) == {0, 1}
    kept = dict(trainer._base_answer_logits)
    passes.clear()
    trainer.compute_loss(model, dict(mixed))
    assert passes == [1, "train"]
    assert all(trainer._base_answer_logits[key] is kept[key] for key in kept)  # the pass for others changes nothing
