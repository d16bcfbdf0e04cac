"""Unlearning methods: one small file each, registered by name in :data:`METHODS`."""

from knowundo.methods import adversarial, ga, ga_gd, ga_kl, memflex, random_label  # noqa: F401  (registration)
from knowundo.methods.base import METHODS, Method, RelabelContext, Side, get_method

__all__ = ["METHODS", "Method", "RelabelContext", "Side", "get_method"]
