"""Random labels: descent on the forget questions with every answer token replaced by a random non-special token.
L = mean_i NLL(ỹ_i | x_i), ỹ uniform over the vocabulary (forget_weight +1)."""

from dataclasses import dataclass

from knowundo.data.relabel import random_labels
from knowundo.methods.base import ForgetParams, Method, register
from knowundo.methods.losses import weighted_nll


@dataclass
class DescentParams(ForgetParams):
    forget_weight: float = 1.0


@register
class RandomLabel(Method):
    """Descent on unlearn answers relabelled with random tokens."""

    name = "random_label"
    Params = DescentParams

    def relabel(self, features, ctx, params):
        return random_labels(features, ctx)

    def forget_loss(self, forget, params):
        return weighted_nll(forget)
