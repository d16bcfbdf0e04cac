"""Gradient ascent on the forget answers plus gradient descent on paired retain answers."""

from knowundo.methods.base import Method, register, weighted_nll

register(Method("ga_gd", loss=lambda forget, retain: weighted_nll(forget) + weighted_nll(retain),
                forget_weight=-1.0, retain_weight=1.0,
                doc="ascent on unlearn + descent on retain data (retention train split, or --general)"))
