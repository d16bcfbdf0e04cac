"""GA + GD: ascent on the forget answers plus descent on paired retain answers.
L = −mean_i NLL(y_i | x_i) + mean_j NLL(r_j | q_j)."""

from knowundo.methods.base import TwoSidedParams, register
from knowundo.methods.ga import GradientAscent
from knowundo.methods.losses import weighted_nll


@register
class GradientAscentDescent(GradientAscent):
    """Ascent on unlearn + descent on retain data (retention train split, or the general set: _ood)."""

    name = "ga_gd"
    Params = TwoSidedParams
    retain = True

    def retain_loss(self, retain, params):
        return weighted_nll(retain)
