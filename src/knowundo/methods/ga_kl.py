"""Gradient ascent on the forget answers plus KL to the fine-tuned model on retain answers (answer tokens only).
The reference is the fine-tuned adapter kept frozen beside the trained one, not the bare base model."""

from knowundo.methods.base import Method, register, weighted_answer_kl, weighted_nll

register(Method("ga_kl", loss=lambda forget, retain: weighted_nll(forget) + weighted_answer_kl(retain),
                forget_weight=-1.0, retain_weight=1.0, needs_reference=True,
                doc="ascent on unlearn + KL(fine-tuned || current) on retain data"))
