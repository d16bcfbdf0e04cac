"""The one place where logits meet labels.

``logits[:, t]`` predicts ``input_ids[:, t + 1]``; every metric, loss, relabelling and KL uses this shift and
the answer-only mask (labels == -100 elsewhere), in float32 whatever dtype the model runs in.
"""

from __future__ import annotations

import torch

from knowundo.data.format import IGNORE


def shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(float32 logits at t, gold token at t+1, answer mask) aligned so that position t predicts t+1."""
    targets = labels[:, 1:]
    mask = targets != IGNORE
    return logits[:, :-1].float(), targets.masked_fill(~mask, 0), mask


def gold_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at every position of already-shifted float32 logits."""
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(gold) per position, zero off the answer; answer mask), both [batch, length - 1]."""
    logits, targets, mask = shifted(logits, labels)
    return gold_logprobs(logits, targets) * mask, mask


def per_sample_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over each sample's answer tokens (float32), shape [batch]."""
    logprob, mask = token_logprobs(logits, labels)
    return -logprob.sum(-1) / mask.sum(-1).clamp(min=1)


def position_kl(logits: torch.Tensor, target_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(target || current) at each answer position of already-shifted logits, flat in ``mask`` order (float32;
    only the answer positions are materialised at vocabulary width)."""
    return torch.nn.functional.kl_div(
        torch.log_softmax(logits[mask].float(), dim=-1),
        torch.log_softmax(target_logits.float(), dim=-1),
        log_target=True,
        reduction="none",
    ).sum(-1)
