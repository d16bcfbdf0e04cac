"""Evaluating one model (base, fine-tuned adapter or unlearned adapter) with exactly the same inputs.

One result file holds, per prompt variant, the teacher-forced metrics (the paper's success scores, PPL), the
generation metrics (ROUGE-L, leak rate) and a per-category breakdown; once per model, general capability,
membership inference and (for an unlearning run) the metrics at every checkpoint.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from tqdm.auto import tqdm

from knowundo.artifacts import (EVAL_RESULT_KIND, checkpoint_steps, file_hash, hash_json, library_versions, read_json,
                                write_json)
from knowundo.config import Config
from knowundo.data.bundled import SCOPES
from knowundo.data.format import Formatter
from knowundo.data.knowundo import DataSource, load_domain, load_general
from knowundo.evaluate.general import general_capability
from knowundo.evaluate.generation import generation_scores
from knowundo.evaluate.mia import membership_inference, membership_scores
from knowundo.evaluate.teacher_forced import aggregate, evaluate_items
from knowundo.models.load import adapter_weights, load_adapter, load_base



def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def summarize(records: list[dict]) -> dict:
    """Teacher-forced aggregates plus, where generated, mean ROUGE-L and leak rates (percent of items)."""
    summary = aggregate(records)
    if "generation" in records[0]:
        summary.update({
            "rougeL_recall": _mean([r["rougeL_recall"] for r in records]),
            "rougeL_f1": _mean([r["rougeL_f1"] for r in records]),
            "hit_token_limit": sum(r["hit_limit"] for r in records),
        })
        for key in ("leak_exact", "leak_normalized"):
            if key in records[0]:
                flags = [r[key] for r in records if r[key] is not None]
                summary[key.replace("leak", "leak_rate")] = 100.0 * sum(flags) / len(flags) if flags else None
    return summary


def _scope(model, formatter: Formatter, items: list[dict], cfg: Config, scope: str) -> dict:
    result = evaluate_items(model, formatter, items, cfg.eval.batch_size, cfg.eval.mia_k)
    records = result.pop("per_item")
    if cfg.eval.generate:
        generated = generation_scores(model, formatter, items, cfg.eval.batch_size, cfg.eval.max_new_tokens,
                                      leak_check=scope == "unlearn")
        for record in records:
            record.update(generated[record["index"]])
    categories = defaultdict(list)
    for record in records:
        categories[record["category"] or "-"].append(record)
    return {**result, **summarize(records), "by_category": {c: summarize(r) for c, r in sorted(categories.items())},
            "per_item": records}


def evaluate_variant(model, tokenizer, cfg: Config, domain: str, data: dict, variant: str) -> dict:
    """Both val splits under one prompt variant; Unlearn Success = 100 - token accuracy on the unlearn scope,
    Retention Success = token accuracy on the retention scope, Avg Success = their mean (the paper's)."""
    system_prompt = cfg.eval.system_prompt(variant, domain)
    formatter = Formatter(tokenizer, cfg.model.template, cfg.model.max_length, system_prompt=system_prompt)
    result = {"system_prompt": system_prompt}
    for scope in SCOPES:
        result[scope] = _scope(model, formatter, data[scope]["val"], cfg, scope)
    result["unlearn_success"] = 100.0 - result["unlearn"]["accuracy"]
    result["retention_success"] = result["retention"]["accuracy"]
    result["avg_success"] = (result["unlearn_success"] + result["retention_success"]) / 2
    return result


def _membership(model, tokenizer, cfg: Config, data: dict, heldout: list[dict], scored_items: dict) -> dict:
    """Unlearn val against retention val and against general held-out, without any system prompt; reuses the
    teacher-forced per-item scores already computed without one (``scored_items``: name -> records)."""
    formatter = Formatter(tokenizer, cfg.model.template, cfg.model.max_length)
    scores = {}
    for name, items in (("unlearn", data["unlearn"]["val"]), ("retention", data["retention"]["val"]),
                        ("general", heldout)):
        records = scored_items.get(name)
        if records is None:
            records = evaluate_items(model, formatter, items, cfg.eval.batch_size, cfg.eval.mia_k)["per_item"]
        scores[name] = membership_scores(records, [items[r["index"]]["labels"] for r in records])
    return membership_inference(scores["unlearn"], {"retention": scores["retention"], "general": scores["general"]})


def checkpoint_curve(model, tokenizer, cfg: Config, data: dict, run_dir: Path) -> list[dict]:
    """Unlearn/Retention Success and PPL at every saved unlearning step (paper Figure 4); each checkpoint's
    adapter is loaded beside the final one and removed again."""
    formatter = Formatter(tokenizer, cfg.model.template, cfg.model.max_length)
    curve = []
    for step, path in checkpoint_steps(run_dir / "checkpoints"):
        model.load_adapter(str(path), adapter_name="checkpoint")
        model.set_adapter("checkpoint")
        point = {"step": step}
        for scope in SCOPES:
            m = evaluate_items(model, formatter, data[scope]["val"], cfg.eval.batch_size, cfg.eval.mia_k)
            point[f"{scope}_accuracy"], point[f"{scope}_ppl"] = m["accuracy"], m["ppl"]
        point["unlearn_success"] = 100.0 - point.pop("unlearn_accuracy")
        point["retention_success"] = point.pop("retention_accuracy")
        curve.append(point)
        model.set_adapter("default")
        model.delete_adapter("checkpoint")
    return curve


def describe_adapter(adapter: Path | None) -> tuple[str, dict | None]:
    """(default label, training summary) from the stage record beside an adapter: the method for an
    unlearning run (``_ood`` when it retained on general data; ``@N`` for its checkpoint at step N),
    ``vanilla`` for a fine-tune, ``base`` for none."""
    if adapter is None:
        return "base", None
    run_dir, step = adapter.parent, None
    if run_dir.name == "checkpoints" and adapter.name.startswith("checkpoint-"):
        run_dir, step = run_dir.parent, int(adapter.name.rsplit("-", 1)[1])
    if (run_dir / "unlearn.json").is_file():
        record = read_json(run_dir / "unlearn.json")
        label = record["method"] + ("_ood" if record.get("retain") == "general" else "")
        keys = ("method", "retain", "region", "steps", "seconds_per_step", "peak_memory_mb", "start_memory_mb",
                "trainable_parameters", "optimized_parameters", "learning_rate", "stopped_early")
        return (label if step is None else f"{label}@{step}",
                {"stage": "unlearn", "checkpoint_step": step, **{k: record.get(k) for k in keys}})
    if (run_dir / "finetune.json").is_file():
        record = read_json(run_dir / "finetune.json")
        return "vanilla", {"stage": "finetune", "wall_seconds": record.get("wall_seconds"),
                           "trainable_parameters": record.get("trainable_parameters")}
    return run_dir.name, None


def eval_key(cfg: Config, domain: str, adapter: str | Path | None, label: str | None) -> str:
    """Everything a result depends on: the adapter's weights, the data, the model and the eval settings."""
    settings = {k: cfg.to_dict()[k] for k in ("seed", "model", "data", "eval")}
    if cfg.model.name == "tiny":
        settings["tiny"] = cfg.to_dict()["tiny"]
    return hash_json({"stage": "eval", "domain": domain, "label": label, "settings": settings,
                      "adapter": file_hash(adapter_weights(adapter)) if adapter is not None else None})


def evaluate_checkpoint(cfg: Config, domain: str, adapter: str | Path | None = None,
                        out_file: str | Path | None = None, label: str | None = None, progress: bool = True) -> dict:
    source = DataSource.from_config(cfg.data)
    data = load_domain(source, domain)
    heldout = load_general(source)["heldout"]
    cfg.eval.check_prompts(domain)
    adapter = Path(adapter) if adapter is not None else None
    default_label, training = describe_adapter(adapter)
    model, tokenizer = load_base(cfg, progress=progress)
    if adapter is not None:
        model = load_adapter(model, adapter)
    with_curve = bool(cfg.eval.curves and training and training["stage"] == "unlearn"
                      and training["checkpoint_step"] is None)
    parts = [*(f"prompt {variant}" for variant in cfg.eval.prompts), "general capability", "membership inference"]
    parts += ["checkpoint curve"] if with_curve else []
    result = {"kind": EVAL_RESULT_KIND, "label": label or default_label, "domain": domain, "prompts": {}}
    with tqdm(parts, desc=f"eval {result['label']}", disable=not progress, leave=False) as bar:
        for part in bar:
            bar.set_postfix_str(part)
            if part.startswith("prompt "):
                variant = part.removeprefix("prompt ")
                result["prompts"][variant] = evaluate_variant(model, tokenizer, cfg, domain, data, variant)
            elif part == "general capability":
                formatter = Formatter(tokenizer, cfg.model.template, cfg.model.max_length)
                result["general"] = {"heldout": evaluate_items(model, formatter, heldout, cfg.eval.batch_size,
                                                               cfg.eval.mia_k),
                                     "lm_eval": general_capability(model, tokenizer, heldout, cfg)}
            elif part == "membership inference":
                scored = {"general": result["general"]["heldout"]["per_item"]}
                if "none" in result["prompts"]:
                    scored.update({scope: result["prompts"]["none"][scope]["per_item"] for scope in SCOPES})
                result["mia"] = _membership(model, tokenizer, cfg, data, heldout, scored)
            else:
                result["curve"] = checkpoint_curve(model, tokenizer, cfg, data, adapter.parent)
    result.setdefault("curve", [])
    result["meta"] = {
        "key": eval_key(cfg, domain, adapter, label), "domain": domain, "adapter": str(adapter) if adapter else None,
        "adapter_hash": file_hash(adapter_weights(adapter)) if adapter else None, "training": training,
        "data_hash": hash_json(data), "seed": cfg.seed, "config": cfg.to_dict(), "versions": library_versions(),
    }
    if out_file is not None:
        write_json(out_file, result)
    return result
