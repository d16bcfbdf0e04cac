"""GA + KL: ascent on the forget answers plus KL(fine-tuned ‖ current) on retain answer tokens. The reference is
the fine-tuned adapter kept frozen beside the trained one, not the bare base model.
L = −mean_i NLL(y_i | x_i) + mean_j mean_t KL(π_ref(·| r_j,<t) ‖ π_θ(·| r_j,<t))."""

from knowundo.methods.base import register
from knowundo.methods.ga_gd import GradientAscentDescent
from knowundo.methods.losses import weighted_answer_kl


@register
class GradientAscentKL(GradientAscentDescent):
    """Ascent on unlearn + KL(fine-tuned ‖ current) on retain data."""

    name = "ga_kl"
    reference = frozenset({"retain"})

    def retain_loss(self, retain, params):
        return weighted_answer_kl(retain)
