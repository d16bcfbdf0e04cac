"""MemFlex (KnowUnDo, arXiv 2407.01920): GA + GD on in-distribution retain data with per-sample weights −0.4
(forget) and +2.0 (retain), trained only inside the region that localization found (everything else frozen).
L = −0.4 · mean_i NLL(y_i | x_i) + 2.0 · mean_j NLL(r_j | q_j)."""

from dataclasses import dataclass

from knowundo.methods.base import TwoSidedParams, register
from knowundo.methods.ga_gd import GradientAscentDescent


@dataclass
class MemFlexParams(TwoSidedParams):
    forget_weight: float = -0.4
    retain_weight: float = 2.0


@register
class MemFlex(GradientAscentDescent):
    """Weighted GA + GD restricted to the localized region (--region required)."""

    name = "memflex"
    Params = MemFlexParams
    localized = True
