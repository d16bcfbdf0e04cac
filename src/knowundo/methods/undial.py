"""UNDIAL (Dong et al. 2024, arXiv 2402.10052): self-distillation toward the frozen fine-tuned model's own
distribution with the gold token's logit lowered by β — a fixed, bounded target, unlike gradient ascent.
At each answer position t: target q_t = softmax(z_ref,t − β·onehot(y_t)); L = mean_i mean_t KL(q_t ‖ π_θ(·|x, y_<t)).
Answer tokens only (open-unlearning averages over every position, prompt and padding included); β = 10 as in
open-unlearning, which also adds no retain term by default (alpha 0)."""

from dataclasses import dataclass

import torch

from knowundo.errors import KnowUndoError
from knowundo.logits import shifted
from knowundo.methods.base import ForgetParams, Method, register
from knowundo.methods.losses import per_answer_token_mean


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
        forget.require("reference_logits")
        current, targets, mask = shifted(forget.logits, forget.labels)
        reference = forget.reference_logits[:, :-1][mask].float()
        reference = reference.scatter_add(-1, targets[mask].unsqueeze(-1),
                                          torch.full_like(reference[:, :1], -params.beta))
        kl = torch.nn.functional.kl_div(torch.log_softmax(current[mask], dim=-1), torch.log_softmax(reference, dim=-1),
                                        log_target=True, reduction="none").sum(-1)
        return (forget.weight * per_answer_token_mean(kl, mask)).mean()
