"""Random labels: fine-tune on the forget questions with every answer token replaced by a random token."""

from knowundo.methods.base import Method, register, weighted_nll
from knowundo.methods.relabel import random_labels

register(Method("random_label", loss=lambda forget, retain: weighted_nll(forget), forget_weight=1.0,
                relabel=random_labels, doc="descent on unlearn answers relabelled with random tokens"))
