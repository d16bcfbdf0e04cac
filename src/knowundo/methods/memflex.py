"""MemFlex: GA + GD on in-distribution retain data with per-sample weights -0.4 (forget) and +2.0 (retain),
applied only inside the region that localization found (the trainer freezes everything else)."""

from knowundo.methods.base import Method, register, weighted_nll

register(Method("memflex", loss=lambda forget, retain: weighted_nll(forget) + weighted_nll(retain),
                forget_weight=-0.4, retain_weight=2.0, needs_region=True,
                doc="weighted GA + GD restricted to the localized region"))
