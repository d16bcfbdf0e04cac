"""The fine-tune stage (the paper's "pretrain"): LoRA on the whole domain so that the model *knows* the data.

Both scopes, train + val, are trained on, as in the reference: the val split then measures knowledge the model
has, and unlearning (train split only) is judged on whether it generalises to the val phrasings.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from transformers import set_seed

from knowundo.artifacts import StageOutput, hash_json, library_versions
from knowundo.config import Config
from knowundo.data.format import Formatter, encode_items, pad_id_of
from knowundo.data.knowundo import DataSource, load_domain
from knowundo.models.load import attach_lora, load_base
from knowundo.distributed import is_main
from knowundo.models.training import (FeatureDataset, PadCollator, batch_record, make_trainer, save_adapter, train,
                                      training_arguments)

RECORD = "finetune.json"


def finetune_key(cfg: Config, domain: str, data) -> str:
    """Everything that shapes the adapter; an output directory holds the result of exactly one key."""
    settings = {k: cfg.to_dict()[k] for k in ("seed", "model", "lora", "data", "finetune")}
    if cfg.model.name == "tiny":
        settings["tiny"] = cfg.to_dict()["tiny"]
    return hash_json({"stage": "finetune", "domain": domain, "settings": settings, "data": hash_json(data)})


def finetune(cfg: Config, domain: str, out_dir: str | Path, progress: bool = True) -> dict:
    """Train and save ``out_dir/adapter`` (safetensors) and ``out_dir/finetune.json``; a finished run with the
    same settings is reused, an interrupted one resumes from its last checkpoint."""
    data = load_domain(DataSource.from_config(cfg.data), domain)
    stage = StageOutput(out_dir, finetune_key(cfg, domain, data), RECORD)
    if (record := stage.finished()) is not None:
        return record

    started = time.perf_counter()
    model, tokenizer = load_base(cfg, progress=progress)
    formatter = Formatter(tokenizer, cfg.model.template, cfg.model.max_length)
    items = [item for scope in data.values() for split in ("train", "val") for item in scope[split]]
    encoded = encode_items(items, formatter)
    # seeded after loading: building the tiny base in this process must not shift the LoRA initialisation
    set_seed(cfg.seed, deterministic=True)
    model = attach_lora(model, cfg)
    trainable, total = model.get_nb_trainable_parameters()

    work = stage.begin()
    args = training_arguments(work / "checkpoints", cfg.finetune, seed=cfg.seed, progress=progress,
                              bf16=cfg.model.dtype == "bfloat16")
    trainer = make_trainer(model, args, FeatureDataset(encoded.features),
                           PadCollator(pad_id_of(tokenizer)))
    result = train(trainer, stage.last_checkpoint())
    save_adapter(trainer, work / "adapter")
    if is_main():
        shutil.rmtree(work / "checkpoints", ignore_errors=True)  # only needed to resume this stage
    return stage.commit({
        "stage": "finetune", "domain": domain, "key": stage.key, "seed": cfg.seed, "config": cfg.to_dict(),
        "data_hash": hash_json(data), "items": len(encoded.features), "truncated": encoded.truncated,
        "dropped": encoded.dropped, "train_loss": result.training_loss,
        "loss_history": [e["loss"] for e in trainer.state.log_history if "loss" in e],
        "trainable_parameters": trainable, "total_parameters": total, "batch": batch_record(args),
        "wall_seconds": time.perf_counter() - started, "versions": library_versions(),
    })
