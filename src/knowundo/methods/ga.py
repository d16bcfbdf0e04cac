"""Gradient ascent: raise the loss on the forget answers (per-sample weight -1)."""

from knowundo.methods.base import Method, register, weighted_nll

register(Method("ga", loss=lambda forget, retain: weighted_nll(forget), forget_weight=-1.0,
                doc="gradient ascent on the unlearn train split"))
