"""IdK DPO (TOFU's preference baseline; DPO: Rafailov et al. 2023, arXiv 2305.18290): prefer a refusal y_w over
the gold forget answer y_l relative to the frozen fine-tuned model, keeping the retain data with NLL.
L = −mean_i log σ(β·[(log π_θ(y_w|x) − log π_ref(y_w|x)) − (log π_θ(y_l|x) − log π_ref(y_l|x))])
    + mean_j NLL(r_j | q_j),
sequence log-probabilities summed over answer tokens; β = 0.1 as commonly used with DPO."""

from dataclasses import dataclass

import torch.nn.functional as F

from knowundo.data.relabel import refusal_answers
from knowundo.errors import KnowUndoError
from knowundo.methods.base import Method, TwoSidedParams, register
from knowundo.methods.losses import log_ratio, weighted_nll


@dataclass
class IdkDPOParams(TwoSidedParams):
    forget_weight: float = 1.0
    retain_weight: float = 1.0
    beta: float = 0.1  # inverse temperature of the DPO loss


@register
class IdkDPO(Method):
    """DPO preferring a refusal over the gold forget answer + descent on retain data."""

    name = "idk_dpo"
    Params = IdkDPOParams
    retain = True
    reference = frozenset({"forget"})

    def check(self, params):
        if params.beta <= 0:
            raise KnowUndoError(f"unlearn.method_args.idk_dpo.beta must be > 0, got {params.beta}")

    def alternative_answers(self, features, ctx, params):
        return refusal_answers(features, ctx)

    def forget_loss(self, forget, params):
        forget.require("alternative")
        margin = log_ratio(forget.alternative) - log_ratio(forget)
        return (forget.weight * -F.logsigmoid(params.beta * margin)).mean()

    def retain_loss(self, retain, params):
        return weighted_nll(retain)
