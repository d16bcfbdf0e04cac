"""Loss pieces shared by several methods, over answer tokens only and in float32 (see :mod:`knowundo.logits`)."""

from __future__ import annotations

import torch

from knowundo.data.format import IGNORE
from knowundo.logits import per_sample_nll, position_kl, shifted, token_logprobs
from knowundo.methods.base import Side


def weighted_nll(side: Side) -> torch.Tensor:
    """Batch mean of weight * NLL: weight -1 is gradient ascent, +1 gradient descent."""
    return (side.weight * per_sample_nll(side.logits, side.labels)).mean()


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log p(answer) per sample, answer-token count per sample), both [batch]."""
    logprob, mask = token_logprobs(logits, labels)
    return logprob.sum(-1), mask.sum(-1)


def per_answer_token_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of per-answer-position ``values`` (flat, in mask order) within each sample, shape [batch]."""
    rows = mask.nonzero()[:, 0]
    return torch.zeros(mask.shape[0], device=values.device).index_add(0, rows, values) / mask.sum(-1).clamp(min=1)


def answer_reference(side: Side) -> tuple[torch.Tensor, torch.Tensor]:
    """(the reference logits at the answer positions, float32 [answer tokens, vocab]; their gold tokens)."""
    side.require("reference_logits")
    targets = side.labels[:, 1:]
    mask = targets != IGNORE
    return side.reference_logits[:, :-1][mask].float(), targets[mask]


def answer_kl(side: Side, target: torch.Tensor | None = None) -> torch.Tensor:
    """KL(target || current) per answer position, averaged over each sample's answer tokens, shape [batch];
    ``target``: logits at the answer positions (default: the reference's). Only answer positions are
    materialised at vocabulary width, which keeps GA+KL's memory close to GA's."""
    if target is None:
        target, _ = answer_reference(side)
    current, _, mask = shifted(side.logits, side.labels)
    return per_answer_token_mean(position_kl(current, target, mask), mask)


def log_ratio(side: Side) -> torch.Tensor:
    """log π_θ(y|x) − log π_ref(y|x) per sample, log-probabilities summed over the answer tokens, [batch]."""
    side.require("reference_logits")
    current, _ = sequence_logprob(side.logits, side.labels)
    reference, _ = sequence_logprob(side.reference_logits, side.labels)
    return current - reference


def weighted_answer_kl(side: Side) -> torch.Tensor:
    """Batch mean of weight * answer-token KL to the reference (the retain term of GA+KL)."""
    return (side.weight * answer_kl(side)).mean()


def retain_term(retain: Side, kind: str) -> torch.Tensor:
    """The usual retain terms: ``nll`` (gradient descent) or ``kl`` (to the reference), weighted."""
    return weighted_nll(retain) if kind == "nll" else weighted_answer_kl(retain)
