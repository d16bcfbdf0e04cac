"""The fine-tune stage (the paper's "pretrain"): LoRA on the whole domain so that the model *knows* the data.

Both scopes, train + val, are trained on, as in the reference: the val split then measures knowledge the model
has, and unlearning (train split only) is judged on whether it generalises to the val phrasings.

The *oracle* is the same recipe on the Retention Scope alone: the model that never saw the Unlearn Scope, which
perfect unlearning would be indistinguishable from (TOFU's retain model, MUSE's retrained model).
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import time
from pathlib import Path

from transformers import set_seed

from knowundo.artifacts import hash_json
from knowundo.config import Config
from knowundo.data.format import Encoded, Formatter, encode_items, pad_id_of
from knowundo.data.system_prompts import system_prompt
from knowundo.distributed import is_main
from knowundo.errors import KnowUndoError
from knowundo.layout import ADAPTER_DIR, CHECKPOINTS_DIR, FINETUNE_RECORD, SCOPES
from knowundo.models.batches import PadCollator, PromptShareDataset, ReplayIdCollator
from knowundo.models.callbacks import SetEpoch, TokenAccuracy
from knowundo.models.load import attach_lora, load_base
from knowundo.models.trainers import AccuracyTrainer
from knowundo.models.training import batch_record, make_trainer, save_trained, train
from knowundo.stage import Stage


def _check_base_knows_no_instance(stage: Stage) -> None:
    """The tiny base is pretrained on an instance-free corpus of its own bundled world; data of another world
    (``data.seed`` != ``tiny.corpus_seed``) could share names with it, and the model would know them before
    fine-tuning."""
    if stage.cfg.model.name != "tiny":
        return
    from knowundo.models.tiny import instances_in_corpus

    instances = {item.get("instance") for scope in stage.data.values() for split in scope.values() for item in split}
    if shared := instances_in_corpus(stage.cfg.tiny, instances - {None}):
        raise KnowUndoError(
            f"the tiny base's pretraining corpus (tiny.corpus_seed={stage.cfg.tiny.corpus_seed}) "
            f"mentions {len(shared)} instances of the {stage.domain} data, e.g. {shared[0]!r}; "
            f"choose another tiny.corpus_seed"
        )


def replayed_general(stage: Stage) -> list[dict]:
    """The replayed share of the general-knowledge train set: a sample seeded by ``seed`` (never the held-out
    part, which measures general ability)."""
    general = stage.general["train"] if stage.cfg.finetune.general_replay > 0 else []
    return random.Random(stage.cfg.seed).sample(general, round(stage.cfg.finetune.general_replay * len(general)))


def training_items(stage: Stage, oracle: bool = False) -> list[dict]:
    """Train + val of both scopes (of the Retention Scope alone for the oracle), each with a composed system prompt
    (:func:`system_prompt`, seeded) when ``finetune.system_prompt_share`` > 0 — :class:`PromptShareDataset` decides
    each epoch which items are asked under theirs — then the replayed general items, always asked plainly:
    replayed under system prompts too, the model lost general ability (docs/notes/2026-12-01-tiny-recipe.md)."""
    if oracle:  # never saw the requested instances' Unlearn Scope items; knows everything else
        items = [item for split in ("train", "val") for item in stage.data["retention"][split]] + stage.unrequested()
    else:
        items = [item for scope in SCOPES for split in ("train", "val") for item in stage.data[scope][split]]
    if stage.cfg.finetune.system_prompt_share > 0:
        rng = random.Random(stage.cfg.seed)
        items = [{**item, "system": system_prompt(rng)} for item in items]
    return items + replayed_general(stage)


def without_prompt(item: dict) -> dict:
    return {k: v for k, v in item.items() if k != "system"}


def prompted_variants(items: list[dict], encoded: Encoded, formatter: Formatter) -> tuple[dict[int, dict], int]:
    """Feature position -> the item encoded under its system prompt, for the kept items that have one (with
    ``replay_id`` -1 where the features carry one: a domain item is trained on its gold answer), and how many
    prompts were dropped because they would push their answer past ``model.max_length`` (a prompt is there to vary
    how a fact is asked, never to cost part of the fact: that item is only ever asked plainly)."""
    variants, dropped = {}, 0
    for position, index in enumerate(encoded.kept):
        if "system" not in items[index]:
            continue
        feature = formatter.encode(items[index])
        if feature is None or feature.pop("truncated"):
            dropped += 1
            continue
        if "replay_id" in encoded.features[position]:
            feature["replay_id"] = -1
        variants[position] = feature
    return variants, dropped


def finetune(cfg: Config, domain: str, out_dir: str | Path, progress: bool = True, oracle: bool = False) -> dict:
    """Train and save ``out_dir/adapter`` (safetensors) and ``out_dir/finetune.json``; a finished run with the
    same settings is reused, an interrupted one resumes from its last checkpoint. ``oracle``: train on the
    Retention Scope only (and the Unlearn Scope's instances no request covers: ``data.forget_fraction``, which the
    fine-tune itself does not depend on). Both come before any of ``run.requests``: ``data.request`` is not theirs."""
    fraction = cfg.data.forget_fraction if oracle else 1.0
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, forget_fraction=fraction, request=0))
    stage = Stage("finetune", cfg, domain)
    items, replayed = training_items(stage, oracle), replayed_general(stage)
    asked = (
        {"system_prompts": hash_json([item.get("system") for item in items]), "prompt_draw": "per_epoch"}
        if cfg.finetune.system_prompt_share
        else {}
    )  # our prompts' wording shapes the model too
    output = stage.output(
        out_dir, FINETUNE_RECORD, stage.data, ("lora", "finetune"), oracle=oracle, replayed=hash_json(replayed), **asked
    )
    if (record := output.finished()) is not None:
        return record
    _check_base_knows_no_instance(stage)

    started = time.perf_counter()
    model, tokenizer = load_base(cfg)
    work = output.begin()
    model, trainer, fields = train_finetune(
        stage, model, tokenizer, work, oracle, progress, output.last_checkpoint(), (items, replayed)
    )
    save_trained(trainer, work / ADAPTER_DIR)
    if is_main():
        shutil.rmtree(work / CHECKPOINTS_DIR, ignore_errors=True)  # only needed to resume this stage
    return output.commit(
        stage.record(output.key, stage.data, oracle=oracle, **fields, wall_seconds=time.perf_counter() - started)
    )


def train_finetune(
    stage: Stage,
    model,
    tokenizer,
    work: Path,
    oracle: bool = False,
    progress: bool = True,
    resume: str | None = None,
    training: tuple[list[dict], list[dict]] | None = None,
):
    """The fine-tune of a loaded model: a fresh LoRA (``lora.*``, seeded) trained on :func:`training_items` until
    ``finetune.target_accuracy`` or its epochs; checkpoints under ``work``. ``training``: (items, replayed general
    items) where the caller has them already. Returns the peft model, the trainer and the record's fields."""
    cfg = stage.cfg
    items, replayed = training or (training_items(stage, oracle), replayed_general(stage))
    formatter = stage.formatter(tokenizer)
    encoded = encode_items([without_prompt(item) for item in items], formatter)
    distil = cfg.finetune.replay_loss == "kl"
    if distil:  # the replayed items come last
        first_replayed = len(items) - len(replayed)
        for feature, index in zip(encoded.features, encoded.kept):
            feature["replay_id"] = index - first_replayed if index >= first_replayed else -1
    # seeded after loading: loading must not shift the LoRA initialisation
    set_seed(cfg.seed, deterministic=True)
    model = attach_lora(model, cfg)
    trainable, total = model.get_nb_trainable_parameters()

    recipe = cfg.finetune
    epochs = (recipe.max_epochs or recipe.epochs) if recipe.target_accuracy is not None else recipe.epochs
    # checkpoints only resume this stage: the last one is enough
    args = stage.training_arguments(
        recipe, work, "oracle" if oracle else "finetune", progress, num_train_epochs=epochs, save_total_limit=1
    )
    accuracy = TokenAccuracy(recipe.target_accuracy)
    collator = (ReplayIdCollator if distil else PadCollator)(pad_id_of(tokenizer))
    variants, prompts_dropped = prompted_variants(items, encoded, formatter)
    dataset = PromptShareDataset(encoded.features, variants, recipe.system_prompt_share, cfg.seed)
    trainer = make_trainer(model, args, dataset, collator, trainer_cls=AccuracyTrainer, accuracy=accuracy)
    trainer.add_callback(SetEpoch(dataset))
    result = train(trainer, resume)
    return (
        model,
        trainer,
        dict(
            items=len(encoded.features),
            truncated=encoded.truncated,
            dropped=encoded.dropped,
            general_replayed=len(replayed),
            system_prompt_variants=len(dataset.prompted),
            system_prompts_dropped=prompts_dropped,
            target_accuracy=recipe.target_accuracy,
            target_reached=accuracy.reached,
            epochs_run=trainer.state.epoch,
            train_accuracy=accuracy.per_epoch[-1] if accuracy.per_epoch else None,
            train_accuracy_per_epoch=accuracy.per_epoch,
            train_loss=result.training_loss,
            loss_history=[e["loss"] for e in trainer.state.log_history if "loss" in e],
            trainable_parameters=trainable,
            total_parameters=total,
            batch=batch_record(args),
        ),
    )


def target_missed(record: dict) -> str | None:
    """One line when a fine-tune stopped short of its target accuracy (None otherwise), with the remedies that
    apply: where the embedding rows were not trained it names them (on text whose tokens the base rarely saw, more
    epochs of LoRA alone plateau); where weight decay pulls the LoRA towards the base, lowering it."""
    if record.get("target_reached") is not False:
        return None
    config = record.get("config", {})
    remedies = ["finetune.learning_rate"]
    if config.get("lora", {}).get("train_embeddings") is False:
        remedies.append("set lora.train_embeddings=true if the data is unlike the base")
    if decay := config.get("finetune", {}).get("weight_decay"):
        remedies.append(f"lower finetune.weight_decay (now {decay:g})")
    return (
        f"the fine-tune reached train token accuracy {100 * record['train_accuracy']:.1f}% after "
        f"{record['epochs_run']:g} epochs, short of finetune.target_accuracy "
        f"{100 * record['target_accuracy']:.1f}%: raise finetune.max_epochs, or {', or '.join(remedies)}"
    )
