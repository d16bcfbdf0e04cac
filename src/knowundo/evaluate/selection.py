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

Ties go to the earlier candidate (the grid's order: the lower learning rate)."""

from __future__ import annotations

from pathlib import Path

from knowundo.artifacts import read_json, write_json
from knowundo.config import Config
from knowundo.errors import KnowUndoError
from knowundo.evaluate.teacher_forced import evaluate_items
from knowundo.layout import SCOPES
from knowundo.models.load import load_causal_lm, load_checkpoint, load_tokenizer
from knowundo.stage import Stage, adapter_hash

SCORES = ("unlearn_success", "retention_success", "avg_success", "general")


def score_selection(model, tokenizer, stage: Stage) -> dict:
    """The selection scores of a loaded model (see the module docstring)."""
    formatter, eval_cfg = stage.formatter(tokenizer), stage.cfg.eval
    accuracy = {
        split: evaluate_items(model, formatter, stage.selection(split), eval_cfg.batch_size)["accuracy"]
        for split in (*SCOPES, "general")
    }
    unlearn, retention = 100.0 - accuracy["unlearn"], accuracy["retention"]
    return {
        "unlearn_success": unlearn,
        "retention_success": retention,
        "avg_success": (unlearn + retention) / 2,
        "general": accuracy["general"],
        "items": {split: len(stage.selection(split)) for split in (*SCOPES, "general")},
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

    everything = list(range(len(candidates)))
    if rule == "best_avg":
        floor = references["vanilla"]["general"] - tolerance
        kept = [i for i in everything if candidates[i]["general"] >= floor]
        if kept:
            return best(kept, "avg_success"), (
                f"highest Avg Success of the {len(kept)} of {len(candidates)} points whose General stays within "
                f"{tolerance:g} points of the vanilla model's ({references['vanilla']['general']:.1f})"
            )
        return best(everything, "general"), (
            f"no point keeps General within {tolerance:g} points of the vanilla model's "
            f"({references['vanilla']['general']:.1f}): the one that keeps most"
        )
    if rule == "oracle_match":
        if "oracle" not in references:
            raise KnowUndoError("the oracle_match rule needs an oracle (run.oracle=true, or run.oracle_model)")
        target = references["oracle"]["unlearn_success"]
        reached = [i for i in everything if candidates[i]["unlearn_success"] >= target]
        if reached:
            return best(reached, "retention_success"), (
                f"highest Retention Success of the {len(reached)} of {len(candidates)} points that forget at least "
                f"as much as the oracle (Unlearn Success {target:.1f})"
            )
        return best(everything, "unlearn_success"), (
            f"no point forgets as much as the oracle (Unlearn Success {target:.1f}): the one that forgets most"
        )
    raise KnowUndoError(f"unknown selection rule {rule!r}")
