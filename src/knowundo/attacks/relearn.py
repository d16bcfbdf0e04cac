"""The relearning attack (Hu et al. 2024, arXiv 2406.13356; Łucki et al. 2024, arXiv 2409.18025): a few
fine-tuning steps on a small part of the forgotten data. If the rest of the Unlearn Scope comes back with it,
the knowledge was hidden, not removed.

From an unlearned adapter (further trained; a full-parameter checkpoint gets a fresh LoRA, so that the attacker is
the same for every row): ``attack.relearn_steps`` optimizer steps of the fine-tune recipe (its learning rate,
batch and accumulation; constant schedule, no warmup: a short attack, not a schedule) on a seeded
``attack.relearn_fraction`` of the unlearn **train** split — never val, which the attack is judged on. A stage
like the others: keyed by the attacked adapter's weights and the settings, reused when finished.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import time
from pathlib import Path

from transformers import set_seed

from knowundo.artifacts import relative_path
from knowundo.config import Config
from knowundo.data.format import encode_items, pad_id_of
from knowundo.distributed import is_main
from knowundo.layout import ADAPTER_DIR, CHECKPOINTS_DIR, RELEARN_RECORD, relearned_adapter
from knowundo.models.batches import FeatureDataset, PadCollator
from knowundo.models.load import is_full_checkpoint, load_checkpoint, trainable_adapter
from knowundo.models.training import batch_record, make_trainer, save_trained, train
from knowundo.stage import Stage, adapter_hash


def relearn_items(stage: Stage) -> list[dict]:
    """The seeded share of the unlearn train split the attacker fine-tunes on (at least one item)."""
    items = stage.train("unlearn")
    count = max(1, round(len(items) * stage.cfg.attack.relearn_fraction))
    chosen = sorted(random.Random(stage.cfg.seed).sample(range(len(items)), count))
    return [items[i] for i in chosen]


def relearn(cfg: Config, domain: str, adapter: str | Path, progress: bool = True) -> dict:
    """Attack ``adapter``; writes ``<run dir>/relearn/adapter`` and ``relearn.json`` beside it and returns the
    record."""
    stage = Stage("relearn", cfg, domain)
    items = relearn_items(stage)
    out_dir = relearned_adapter(adapter).parent
    attack = {"steps": cfg.attack.relearn_steps, "fraction": cfg.attack.relearn_fraction}
    output = stage.output(
        out_dir, RELEARN_RECORD, items, ("lora", "finetune"), adapter=adapter_hash(adapter), attack=attack
    )
    if (record := output.finished()) is not None:
        return record
    started = time.perf_counter()
    if is_full_checkpoint(adapter):  # a fresh LoRA on it: the same attacker as on an adapter row
        model, tokenizer = load_checkpoint(cfg, adapter)
        model = trainable_adapter(model, None, cfg)
    else:
        model, tokenizer = load_checkpoint(cfg, adapter, trainable=True)
    encoded = encode_items(items, stage.formatter(tokenizer))
    set_seed(cfg.seed, deterministic=True)
    work = output.begin()
    recipe = dataclasses.replace(cfg.finetune, scheduler="constant", warmup_ratio=0.0, save_steps=0)
    args = stage.training_arguments(recipe, work, "relearn", progress, max_steps=cfg.attack.relearn_steps)
    trainer = make_trainer(model, args, FeatureDataset(encoded.features), PadCollator(pad_id_of(tokenizer)))
    result = train(trainer, None)
    save_trained(trainer, work / ADAPTER_DIR)
    if is_main():
        shutil.rmtree(work / CHECKPOINTS_DIR, ignore_errors=True)
    return output.commit(
        stage.record(
            output.key,
            items,
            attacked_adapter=relative_path(adapter, output.out_dir),
            attacked_adapter_hash=adapter_hash(adapter),
            items=len(encoded.features),
            steps=trainer.state.global_step,
            learning_rate=recipe.learning_rate,
            batch=batch_record(args),
            train_loss=result.training_loss,
            wall_seconds=time.perf_counter() - started,
        )
    )
