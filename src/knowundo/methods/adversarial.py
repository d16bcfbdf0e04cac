"""Adversarial samples: fine-tune toward the fine-tuned model's most likely wrong token at each answer position."""

from knowundo.methods.base import Method, register, weighted_nll
from knowundo.methods.relabel import adversarial_labels

register(Method("adversarial", loss=lambda forget, retain: weighted_nll(forget), forget_weight=1.0,
                relabel=adversarial_labels, doc="descent on unlearn answers relabelled with argmax_{a != y} P(a)"))
