"""Adversarial samples: descent toward the fine-tuned model's most likely wrong token at each answer position.
L = mean_i NLL(a_i | x_i), a_t = argmax_{a ≠ y_t} P_ref(a | y_<t, x) (or sampled within top_k / top_p)."""

from dataclasses import dataclass

from knowundo.data.relabel import adversarial_labels
from knowundo.errors import KnowUndoError
from knowundo.methods.base import register
from knowundo.methods.random_label import DescentParams, RandomLabel


@dataclass
class AdversarialParams(DescentParams):
    top_k: int = 1  # 1: the argmax over a != gold; > 1: sample within the k most likely wrong tokens
    top_p: float = 1.0  # < 1: sample within this nucleus of the wrong tokens


@register
class Adversarial(RandomLabel):
    """Descent toward argmax_{a ≠ y} P(a | y<t, x) of the fine-tuned model."""

    name = "adversarial"
    Params = AdversarialParams

    def check(self, params):
        if params.top_k < 1 or not 0 < params.top_p <= 1:
            raise KnowUndoError("unlearn.method_args.adversarial: top_k must be >= 1 and top_p in (0, 1]")

    def relabel(self, features, ctx, params):
        return adversarial_labels(features, ctx, params.top_k, params.top_p)
