"""NPO — Negative Preference Optimization (Zhang et al. 2024, arXiv 2404.05868): the forget answers are the
dispreferred responses of DPO with no preferred one; unlike gradient ascent the loss is bounded, and each
sample's gradient fades once the model has moved it below the reference.

L = −(2/β)·mean_i log σ(−β·(log π_θ(y_i|x_i) − log π_ref(y_i|x_i))) + retain term,
sequence log-probabilities summed over answer tokens; π_ref is the frozen fine-tuned adapter. Retain term: NLL
(default) or KL to π_ref. β = 0.1 as in the paper; open-unlearning uses the same β and weights both terms 1.
"""

from dataclasses import dataclass

import torch.nn.functional as F

from knowundo.errors import KnowUndoError
from knowundo.methods.base import Method, TwoSidedParams, register
from knowundo.methods.losses import log_ratio, retain_term


@dataclass
class NPOParams(TwoSidedParams):
    forget_weight: float = 1.0
    retain_weight: float = 1.0
    beta: float = 0.1  # inverse temperature: how sharply the loss saturates once below the reference
    retain_loss: str = "nll"  # nll | kl


@register
class NPO(Method):
    """Negative preference optimization against the fine-tuned model, plus a retain term."""

    name = "npo"
    Params = NPOParams
    retain = True

    def reference_sides(self, params):
        return frozenset({"forget", "retain"} if params.retain_loss == "kl" else {"forget"})

    def check(self, params):
        if params.beta <= 0:
            raise KnowUndoError(f"unlearn.method_args.{self.name}.beta must be > 0, got {params.beta}")
        if params.retain_loss not in ("nll", "kl"):
            raise KnowUndoError(
                f"unlearn.method_args.{self.name}.retain_loss must be nll or kl, got {params.retain_loss!r}"
            )

    def forget_loss(self, forget, params):
        per_sample = -(2 / params.beta) * F.logsigmoid(-params.beta * log_ratio(forget))
        return (forget.weight * per_sample).mean()

    def retain_loss(self, retain, params):
        return retain_term(retain, params.retain_loss)
