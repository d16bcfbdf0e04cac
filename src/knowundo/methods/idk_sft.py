"""IdK SFT ("I don't know", TOFU: Maini et al. 2024, arXiv 2401.06121): fine-tune the forget questions toward a
refusal instead of the protected answer, keeping the retain data with NLL. Refusals come from a bundled list of
our own (:mod:`knowundo.data.refusals`), one per forget item from the seeded RNG.
L = mean_i NLL(refusal_i | x_i) + mean_j NLL(r_j | q_j)."""

from dataclasses import dataclass

from knowundo.data.relabel import refusal_answers
from knowundo.methods.base import Method, TwoSidedParams, register
from knowundo.methods.losses import weighted_nll


@dataclass
class IdkParams(TwoSidedParams):
    forget_weight: float = 1.0
    retain_weight: float = 1.0


@register
class IdkSFT(Method):
    """Descent toward refusals on the forget questions + descent on retain data."""

    name = "idk_sft"
    Params = IdkParams
    retain = True

    def relabel(self, features, ctx, params):
        return refusal_answers(features, ctx)

    def forget_loss(self, forget, params):
        return weighted_nll(forget)

    def retain_loss(self, retain, params):
        return weighted_nll(retain)
