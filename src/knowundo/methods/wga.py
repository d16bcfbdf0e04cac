"""WGA — weighted gradient ascent (Wang et al. 2025, arXiv 2502.19301): each answer token's ascent term is
weighted by the model's own (detached) probability of it, so tokens already forgotten stop driving the update.
L = −mean_i mean_t p_θ(y_t | x, y_<t)^β · NLL_t (forget_weight −1), p detached; β = 1 as in open-unlearning
(which averages over all answer tokens of the batch and adds an NLL retain term; this is the forget term alone,
like `ga`)."""

from dataclasses import dataclass

from knowundo.errors import KnowUndoError
from knowundo.logits import token_logprobs
from knowundo.methods.base import ForgetParams, Method, register


@dataclass
class WGAParams(ForgetParams):
    beta: float = 1.0  # exponent of the token weight p^β


@register
class WeightedGradientAscent(Method):
    """Gradient ascent with each token weighted by its detached probability to the power β."""

    name = "wga"
    Params = WGAParams

    def check(self, params):
        if params.beta < 0:
            raise KnowUndoError(f"unlearn.method_args.wga.beta must be >= 0, got {params.beta}")

    def forget_loss(self, forget, params):
        logprob, mask = token_logprobs(forget.logits, forget.labels)
        weights = (logprob.detach() * params.beta).exp() * mask
        per_sample = -(weights * logprob).sum(-1) / mask.sum(-1).clamp(min=1)
        return (forget.weight * per_sample).mean()
