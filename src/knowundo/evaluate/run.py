"""Evaluating one checkpoint (base model, fine-tuned adapter or unlearned adapter) with the same inputs."""

from __future__ import annotations

from pathlib import Path

from knowundo.artifacts import file_hash, hash_json, library_versions, write_json
from knowundo.config import Config
from knowundo.data.format import Formatter
from knowundo.data.knowundo import DataSource, load_domain, load_general
from knowundo.evaluate.teacher_forced import evaluate_domain, evaluate_items
from knowundo.models.load import adapter_weights, load_adapter, load_base


def evaluate_checkpoint(cfg: Config, domain: str, adapter: str | Path | None = None,
                        out_file: str | Path | None = None) -> dict:
    source = DataSource.from_config(cfg.data)
    data = load_domain(source, domain)
    model, tokenizer = load_base(cfg)
    if adapter is not None:
        model = load_adapter(model, adapter)
    formatter = Formatter(tokenizer, cfg.model.template, cfg.model.max_length)
    result = evaluate_domain(model, formatter, data, cfg.eval.batch_size)
    # general capability on knowledge outside both scopes that no stage trains on (held-out general set)
    result["general"] = evaluate_items(model, formatter, load_general(source)["heldout"], cfg.eval.batch_size)
    result["meta"] = {
        "domain": domain, "adapter": str(adapter) if adapter else None,
        "adapter_hash": file_hash(adapter_weights(adapter)) if adapter else None,
        "data_hash": hash_json(data), "seed": cfg.seed, "config": cfg.to_dict(), "versions": library_versions(),
    }
    if out_file is not None:
        write_json(out_file, result)
    return result
