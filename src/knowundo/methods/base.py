"""What a method is: a loss over a ``{forget, retain}`` batch, the per-sample weights its data carries, and an
optional relabelling of the forget answers. One :class:`~knowundo.unlearn.UnlearnTrainer` runs them all.

Weights and reference logits reach the loss as explicit inputs (:class:`Side`); a loss never looks anything up
by name, so a missing weight cannot silently turn unlearning into fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from knowundo.errors import KnowUndoError
from knowundo.logits import shifted, token_logprobs


@dataclass(frozen=True)
class Side:
    """One half of a batch after the forward pass: logits, answer-only labels, per-sample weights, and (for
    KL methods) the frozen fine-tuned model's logits on the same inputs."""

    logits: torch.Tensor
    labels: torch.Tensor
    weight: torch.Tensor
    reference_logits: torch.Tensor | None = None


@dataclass(frozen=True)
class RelabelContext:
    """What a relabelling may use: the fine-tuned model (before any unlearning), its tokenizer, a seeded RNG."""

    model: object
    tokenizer: object
    generator: torch.Generator
    top_k: int = 1
    top_p: float = 1.0
    batch_size: int = 16


@dataclass(frozen=True)
class Method:
    name: str
    loss: Callable[[Side, Side | None], torch.Tensor]
    forget_weight: float
    retain_weight: float | None = None  # None: the method trains on no retain data
    needs_reference: bool = False
    needs_region: bool = False  # only meaningful inside a localized region (MemFlex)
    relabel: Callable[[list[dict], RelabelContext], list[dict]] | None = None
    doc: str = ""


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise KnowUndoError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[name]


def per_sample_nll(side: Side) -> torch.Tensor:
    """Mean negative log-likelihood over each sample's answer tokens (float32), shape [batch]."""
    logprob, mask = token_logprobs(side.logits, side.labels)
    return -logprob.sum(-1) / mask.sum(-1).clamp(min=1)


def weighted_nll(side: Side) -> torch.Tensor:
    """Batch mean of weight * NLL: weight -1 is gradient ascent, +1 gradient descent."""
    return (side.weight * per_sample_nll(side)).mean()


def weighted_answer_kl(side: Side) -> torch.Tensor:
    """KL(reference || current) per answer position, averaged over each sample's answer tokens (never over
    prompt or padding), then weighted and averaged over the batch. Only answer positions are materialised at
    vocabulary width, which keeps GA+KL's memory close to GA's."""
    if side.reference_logits is None:
        raise KnowUndoError("this loss needs reference logits; the trainer must pass them")
    current, _, mask = shifted(side.logits, side.labels)
    reference = side.reference_logits[:, :-1][mask].float()
    kl = torch.nn.functional.kl_div(torch.log_softmax(current[mask], dim=-1), torch.log_softmax(reference, dim=-1),
                                    log_target=True, reduction="none").sum(-1)
    rows = mask.nonzero()[:, 0]
    per_sample = torch.zeros(mask.shape[0], device=kl.device).index_add(0, rows, kl) / mask.sum(-1).clamp(min=1)
    return (side.weight * per_sample).mean()
