"""Loss pieces shared by several methods, over answer tokens only and in float32 (see :mod:`knowundo.logits`)."""

from __future__ import annotations

import torch

from knowundo.logits import per_sample_nll, shifted, token_logprobs
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


def answer_kl(side: Side) -> torch.Tensor:
    """KL(reference || current) per answer position, averaged over each sample's answer tokens, shape [batch].
    Only answer positions are materialised at vocabulary width, which keeps GA+KL's memory close to GA's."""
    side.require("reference_logits")
    current, _, mask = shifted(side.logits, side.labels)
    reference = side.reference_logits[:, :-1][mask].float()
    kl = torch.nn.functional.kl_div(torch.log_softmax(current[mask], dim=-1), torch.log_softmax(reference, dim=-1),
                                    log_target=True, reduction="none").sum(-1)
    return per_answer_token_mean(kl, mask)


def weighted_answer_kl(side: Side) -> torch.Tensor:
    """Batch mean of weight * answer-token KL to the reference (the retain term of GA+KL)."""
    return (side.weight * answer_kl(side)).mean()


def retain_term(retain: Side, kind: str) -> torch.Tensor:
    """The usual retain terms: ``nll`` (gradient descent) or ``kl`` (to the reference), weighted."""
    return weighted_nll(retain) if kind == "nll" else weighted_answer_kl(retain)
