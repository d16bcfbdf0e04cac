"""SimNPO (Fan et al. 2024, arXiv 2410.07163): NPO without the reference model — the reward is the
length-normalised log-probability, with a margin δ — so that long and short forget answers get comparable push
and no second model pass is needed.

L = −(2/β)·mean_i log σ(−(β/|y_i|)·log π_θ(y_i|x_i) − δ) + retain term (NLL by default, or KL).
Defaults: β 2.5, δ 0, both terms weighted 1 (open-unlearning's class defaults are β 1, δ 0).
"""

from dataclasses import dataclass

import torch.nn.functional as F

from knowundo.methods.base import register
from knowundo.methods.losses import sequence_logprob
from knowundo.methods.npo import NPO, NPOParams


@dataclass
class SimNPOParams(NPOParams):
    beta: float = 2.5  # inverse temperature of the length-normalized log-probability
    delta: float = 0.0  # the reward margin


@register
class SimNPO(NPO):
    """Reference-free, length-normalised NPO with a margin, plus a retain term."""

    name = "simnpo"
    Params = SimNPOParams

    def reference_sides(self, params):
        return frozenset({"retain"} if params.retain_loss == "kl" else set())

    def forget_loss(self, forget, params):
        logprob, tokens = sequence_logprob(forget.logits, forget.labels)
        mean_logprob = logprob / tokens.clamp(min=1)
        per_sample = -(2 / params.beta) * F.logsigmoid(-params.beta * mean_logprob - params.delta)
        return (forget.weight * per_sample).mean()
