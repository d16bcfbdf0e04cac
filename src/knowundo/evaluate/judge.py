"""The judge pass: how fluent a text is, as the perplexity of its tokens under a fixed judge model — the base
model (the evaluated model with its adapter switched off, so no second model is loaded), teacher-forced on the
answer tokens only, conditioned on the question without a system prompt.

A generation counts as gibberish when its judge perplexity exceeds a threshold calibrated on the gold answers:
the 99th percentile of the gold val answers' judge perplexity (both scopes of the domain). Judge and gold answers
are the same for every model of a domain, so every model is held to the same threshold.
"""

from __future__ import annotations

import contextlib
import math

import numpy

from knowundo.data.format import IGNORE, Formatter, pad_id_of
from knowundo.evaluate.teacher_forced import score_features

GOLD_PERCENTILE = 99.0
JUDGE = "base model (the evaluated model with its adapter disabled)"
RULE = (f"gibberish: judge perplexity above the {GOLD_PERCENTILE:g}th percentile of the gold val answers' judge "
        f"perplexity (both scopes, no system prompt)")


@contextlib.contextmanager
def judge_model(model):
    """The judge: the base model under a LoRA-wrapped model, the model itself when it has no adapter."""
    context = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    with context:
        yield model


def judge_perplexities(model, formatter: Formatter, questions: list[str], answers: list[list[int]],
                       batch_size: int) -> list[float | None]:
    """Judge perplexity of each answer (token ids, no EOS) after its question; None for an empty answer."""
    features, kept = [], []
    for index, (question, answer) in enumerate(zip(questions, answers)):
        prompt = formatter.prompt_ids(question)
        ids = (prompt + list(answer))[: formatter.max_length]
        if answer and len(ids) > len(prompt):
            features.append({"input_ids": ids, "labels": [IGNORE] * len(prompt) + ids[len(prompt):]})
            kept.append(index)
    perplexities: list[float | None] = [None] * len(questions)
    if features:
        with judge_model(model):
            scores = score_features(model, features, pad_id_of(formatter.tokenizer), batch_size)
        for index, score in zip(kept, scores):
            perplexities[index] = math.exp(min(-score["mean_logprob"], 700.0))
    return perplexities


def gibberish_threshold(gold_perplexities: list[float]) -> float:
    """The calibrated threshold: the GOLD_PERCENTILE-th percentile (linear interpolation) of the gold answers'
    judge perplexity."""
    return float(numpy.percentile(numpy.asarray(gold_perplexities, dtype=float), GOLD_PERCENTILE))
