"""Gradient ascent: raise the NLL of the forget answers. L = −mean_i NLL(y_i | x_i) (forget_weight −1)."""

from knowundo.methods.base import Method, register
from knowundo.methods.losses import weighted_nll


@register
class GradientAscent(Method):
    """Gradient ascent on the unlearn train split (the paper's GA baseline)."""

    name = "ga"

    def forget_loss(self, forget, params):
        return weighted_nll(forget)
