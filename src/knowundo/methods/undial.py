"""UNDIAL (Dong et al. 2024, arXiv 2402.10052): self-distillation toward the frozen fine-tuned model's own
distribution with the gold token's logit lowered by β — a fixed, bounded target, unlike gradient ascent.
At each answer position t: target q_t = softmax(z_ref,t − β·onehot(y_t)); L = mean_i mean_t KL(q_t ‖ π_θ(·|x, y_<t)).
Answer tokens only (open-unlearning averages over every position, prompt and padding included); β = 10 as in
open-unlearning, which also adds no retain term by default (alpha 0)."""

from dataclasses import dataclass

import torch

from knowundo.errors import KnowUndoError
from knowundo.methods.base import ForgetParams, Method, register
from knowundo.methods.losses import answer_kl, answer_reference


@dataclass
class UndialParams(ForgetParams):
    forget_weight: float = 1.0
    beta: float = 10.0  # how far the gold token's logit is lowered in the target


@register
class Undial(Method):
    """Self-distillation toward the fine-tuned logits with the gold token penalised."""

    name = "undial"
    Params = UndialParams
    reference = frozenset({"forget"})

    def check(self, params):
        if params.beta < 0:
            raise KnowUndoError(f"unlearn.method_args.undial.beta must be >= 0, got {params.beta}")

    def forget_loss(self, forget, params):
        reference, gold = answer_reference(forget)
        target = reference.scatter_add(-1, gold.unsqueeze(-1), torch.full_like(reference[:, :1], -params.beta))
        return (forget.weight * answer_kl(forget, target)).mean()
