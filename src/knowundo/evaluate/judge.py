"""The judge pass: how fluent a text is, as the perplexity of its tokens under a fixed judge model, teacher-forced
on the answer tokens only, conditioned on the question without a system prompt. Two judges: the **base** model
(``model.name`` without any adapter: the evaluated model with its adapter switched off) and, when the domain has
one, the **oracle** (the fine-tune on the Retention Scope alone, its adapter swapped in; or an oracle model given
as such). A judge is loaded as a second model only where the evaluated model cannot become it by switching an
adapter (a full checkpoint, an oracle model given as such). The base model judges plain
language; the oracle also knows the domain's world and templates, yet never learned the Unlearn Scope — a fluent
answer it did not learn is as likely under it as the gold answer.

A generation counts as gibberish under a judge when its perplexity exceeds that judge's threshold calibrated on
the gold answers: the 99th percentile of the gold val answers' judge perplexity (both scopes of the domain). Judges
and gold answers are the same for every model of a domain, so every model is held to the same thresholds.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy

from knowundo.data.format import IGNORE, Formatter, pad_id_of
from knowundo.evaluate.teacher_forced import score_features
from knowundo.models.load import swapped_checkpoint

GOLD_PERCENTILE = 99.0
JUDGES = {
    "base": "the base model (model.name without any adapter)",
    "oracle": "the oracle (the fine-tune on the Retention Scope alone, or the oracle model given)",
}
RULE = (
    f"gibberish: judge perplexity above the {GOLD_PERCENTILE:g}th percentile of the gold val answers' judge "
    f"perplexity (both scopes, no system prompt), per judge"
)


def record_keys(judge: str) -> tuple[str, str]:
    """The per-item record keys of one judge: (perplexity, gibberish flag)."""
    prefix = "" if judge == "base" else f"{judge}_"
    return f"{prefix}judge_ppl", f"{prefix}gibberish"


@contextlib.contextmanager
def judge_model(model, judge: str = "base", oracle_adapter: Path | None = None):
    """The judge as a model: the base model under a LoRA-wrapped model (the model itself when it has no
    adapter); the oracle's adapter swapped in (``oracle_adapter`` None: the evaluated model is the oracle)."""
    if judge == "oracle":
        context = swapped_checkpoint(model, oracle_adapter) if oracle_adapter is not None else contextlib.nullcontext()
    else:
        context = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    with context as judged:
        yield model if judged is None else judged


def judge_perplexities(
    model, formatter: Formatter, questions: list[str], answers: list[list[int]], batch_size: int
) -> list[float | None]:
    """Perplexity under ``model`` (a judge) of each answer (token ids, no EOS) after its question; None for an
    empty answer."""
    features, kept = [], []
    for index, (question, answer) in enumerate(zip(questions, answers)):
        prompt = formatter.prompt_ids(question)
        ids = (prompt + list(answer))[: formatter.max_length]
        if answer and len(ids) > len(prompt):
            features.append({"input_ids": ids, "labels": [IGNORE] * len(prompt) + ids[len(prompt) :]})
            kept.append(index)
    perplexities: list[float | None] = [None] * len(questions)
    if features:
        scores = score_features(model, features, pad_id_of(formatter.tokenizer), batch_size)
        for index, score in zip(kept, scores):
            perplexities[index] = math.exp(min(-score["mean_logprob"], 700.0))
    return perplexities


def gibberish_threshold(gold_perplexities: list[float]) -> float:
    """The calibrated threshold: the GOLD_PERCENTILE-th percentile (linear interpolation) of the gold answers'
    judge perplexity."""
    return float(numpy.percentile(numpy.asarray(gold_perplexities, dtype=float), GOLD_PERCENTILE))
