"""Scoring on the selection split (``data.selection``) and the declared rules that choose by it.

A model's selection scores are the table's headline values computed the same way (teacher-forced token accuracy,
no system prompt) on the items set aside for choosing: Unlearn Success (100 − accuracy on the unlearn scope's
selection items), Retention Success, their mean, and General (accuracy on the general held-out set's selection
part). Nothing here reads a val item or the reported general items.

Rules (``sweep.rule``), each choosing one candidate among several trainings of one row:

- ``best_avg``: the highest Avg Success among the candidates whose General is at most ``tolerance`` points below
  the vanilla model's; when none is, the one with the highest General (stated in the reason).
- ``oracle_match``: among the candidates whose Unlearn Success reaches the oracle's (MUSE's rule, Shi et al. 2024:
  forget as much as a model that never saw the data, no more is needed), the highest Retention Success; when none
  reaches it, the one that forgets most (stated).

Ties go to the earlier candidate (the grid's order: the lower learning rate; the earlier checkpoint).

``unlearn.select`` applies the same rules to the checkpoints of one unlearning run (``unlearn.save_steps``) and
records the one a row reports, and why, in ``selected.json`` beside the run."""

from __future__ import annotations

from pathlib import Path

from knowundo.artifacts import checkpoint_steps, hash_json, read_json, relative_path, stored_path, write_json
from knowundo.config import Config
from knowundo.errors import KnowUndoError
from knowundo.evaluate.metric import metrics, reduce_variant
from knowundo.evaluate.teacher_forced import evaluate_items
from knowundo.layout import ADAPTER_DIR, CHECKPOINTS_DIR, SCOPES, SELECTED_RECORD, SELECTION_DIR, UNLEARN_RECORD
from knowundo.models.load import load_causal_lm, load_checkpoint, load_tokenizer
from knowundo.stage import Stage, adapter_hash

SCORES = ("unlearn_success", "retention_success", "avg_success", "general")  # what a choice reads of a model


def score_selection(model, tokenizer, stage: Stage) -> dict:
    """The selection scores of a loaded model (see the module docstring): the success metric's own reduction of
    the per-item records, as the table's."""
    formatter, batch_size = stage.formatter(tokenizer), stage.cfg.eval.batch_size
    scored = {
        split: evaluate_items(model, formatter, stage.selection(split), batch_size) for split in (*SCOPES, "general")
    }
    success = [metric for metric in metrics() if metric.name == "success"]
    variant = reduce_variant(success, {scope: scored[scope]["per_item"] for scope in SCOPES})
    return {
        **{key: variant[key] for key in SCORES[:3]},
        "general": scored["general"]["accuracy"],
        "items": {split: len(stage.selection(split)) for split in scored},
    }


def selection_scores(cfg: Config, domain: str, checkpoint: Path | None, target: Path, model_name: str = "") -> dict:
    """The selection scores of a saved model (the base with an adapter, a full checkpoint, the base itself for
    None, or the model ``model_name``), cached in ``target`` under a key of the weights, the data and the model."""
    stage = Stage("selection", cfg, domain)
    if not stage.selection("unlearn"):
        raise KnowUndoError("scoring on the selection split needs data.selection > 0 (e.g. --set data.selection=0.2)")
    key = stage.key(
        {split: stage.selection(split) for split in (*SCOPES, "general")},
        adapter=adapter_hash(checkpoint),
        model_name=model_name or None,
    )
    if target.is_file() and (cached := read_json(target)).get("key") == key:
        return cached
    if model_name:
        model, tokenizer = load_causal_lm(model_name, cfg), load_tokenizer(cfg, model_name)
    else:
        model, tokenizer = load_checkpoint(cfg, checkpoint)
    model.eval()
    scores = {"key": key, **score_selection(model, tokenizer, stage)}
    write_json(target, scores)
    return scores


def choose(candidates: list[dict], rule: str, references: dict[str, dict], tolerance: float = 5.0) -> tuple[int, str]:
    """(index of the chosen candidate, why): ``candidates`` are selection scores in the grid's order,
    ``references`` those of ``vanilla`` (best_avg) and ``oracle`` (oracle_match)."""
    if not candidates:
        raise KnowUndoError("nothing to choose from")

    def best(indices: list[int], score: str) -> int:
        return max(indices, key=lambda i: (candidates[i][score], -i))

    if rule == "best_avg":
        level = references["vanilla"]["general"]
        within = f"within {tolerance:g} points of the vanilla model's ({level:.1f})"
        qualifies, goal, fallback = (lambda c: c["general"] >= level - tolerance), "avg_success", "general"
        chosen_why = f"highest Avg Success of the {{kept}} points whose General stays {within}"
        fallback_why = f"no point keeps General {within}: the one that keeps most"
    elif rule == "oracle_match":
        if "oracle" not in references:
            raise KnowUndoError("the oracle_match rule needs an oracle (run.oracle=true, or run.oracle_model)")
        target = references["oracle"]["unlearn_success"]
        qualifies, goal, fallback = (lambda c: c["unlearn_success"] >= target), "retention_success", "unlearn_success"
        oracle = f"as much as the oracle (Unlearn Success {target:.1f})"
        chosen_why = f"highest Retention Success of the {{kept}} points that forget at least {oracle}"
        fallback_why = f"no point forgets {oracle}: the one that forgets most"
    else:
        raise KnowUndoError(f"unknown selection rule {rule!r}")
    kept = [i for i, candidate in enumerate(candidates) if qualifies(candidate)]
    if kept:
        return best(kept, goal), chosen_why.format(kept=f"{len(kept)} of {len(candidates)}")
    return best(list(range(len(candidates))), fallback), fallback_why


def choose_checkpoint(
    cfg: Config, domain: str, run_dir: Path, references: dict[str, dict], rule: str, tolerance: float
) -> tuple[dict, bool]:
    """(record, cached): every checkpoint of the unlearning run in ``run_dir`` (and its final adapter, when no
    checkpoint holds it) scored on the selection split, one chosen by ``rule``; written to ``selected.json``."""
    final = run_dir / ADAPTER_DIR
    steps = read_json(run_dir / UNLEARN_RECORD)["steps"]
    ending = adapter_hash(final)
    saved = [(step, path, adapter_hash(path)) for step, path in checkpoint_steps(run_dir / CHECKPOINTS_DIR)]
    candidates = [(step, path) for step, path, weights in saved if weights != ending]
    candidates.append((steps, final))  # the end of the run, as `last` reports it
    key = hash_json(
        {
            "rule": rule,
            "tolerance": tolerance,
            "references": {name: scores["key"] for name, scores in references.items()},
            "candidates": [(step, weights) for step, _, weights in saved if weights != ending] + [(steps, ending)],
        }
    )
    target = run_dir / SELECTED_RECORD
    if target.is_file() and (cached := read_json(target)).get("key") == key:
        return cached, True
    scored = [
        selection_scores(cfg, domain, path, run_dir / SELECTION_DIR / f"{step}.json") for step, path in candidates
    ]
    index, reason = choose(scored, rule, references, tolerance)
    step, path = candidates[index]
    record = {
        "key": key,
        "rule": rule,
        "step": step,
        "steps": steps,
        "adapter": relative_path(path, run_dir),
        "reason": reason,
        "candidates": [{"step": s, **{k: v[k] for k in SCORES}} for (s, _), v in zip(candidates, scored)],
    }
    write_json(target, record)
    return record, False


def reported_adapter(run_dir: Path) -> Path:
    """The adapter a row with a chosen checkpoint reports (``selected.json``)."""
    record = run_dir / SELECTED_RECORD
    if not record.is_file():
        raise KnowUndoError(f"{run_dir}: no {SELECTED_RECORD}; the checkpoint is chosen after unlearning")
    return stored_path(read_json(record)["adapter"], run_dir)
