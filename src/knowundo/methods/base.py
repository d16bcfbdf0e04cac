"""What a method is: a class registered with ``@register``, naming its parameters (a dataclass whose defaults come
from the method's paper), its losses over the two sides of a batch, and what those losses need.

One :class:`~knowundo.unlearn.UnlearnTrainer` runs every method. It builds each side as a :class:`Side` with
explicit per-sample weights (the parameters' ``forget_weight`` / ``retain_weight``) and, where the method asks
for them, the frozen fine-tuned model's outputs, the hidden states and alternative answers; a loss never looks
anything up by name, so a missing input is an error, never a silent fallback. The forget loss is backpropagated
before the retain side's forward pass, so every loss is a sum of a forget term and a retain term.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from knowundo.config import merge_settings
from knowundo.data.relabel import RelabelContext
from knowundo.errors import KnowUndoError

SIDES = ("forget", "retain")


@dataclass(frozen=True)
class Side:
    """One side of a batch after the forward pass: logits, answer-only labels (-100 elsewhere), per-sample
    weights; on request the reference (frozen fine-tuned) model's logits on the same inputs, the hidden states
    of every layer (``hidden_states[l]`` is the output of decoder layer ``l``, 0 the embeddings) and the same
    questions with alternative answers (``alternative``, itself a Side). Logits, labels and hidden states cover
    the batch's answer window (:func:`knowundo.logits.answer_window`), all alike: position t still predicts the
    label at t + 1."""

    logits: torch.Tensor
    labels: torch.Tensor
    weight: torch.Tensor
    reference_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    reference_hidden_states: tuple[torch.Tensor, ...] | None = None
    alternative: Side | None = None

    def require(self, *fields: str) -> None:
        missing = [f for f in fields if getattr(self, f) is None]
        if missing:
            raise KnowUndoError(f"this loss needs {', '.join(missing)} on its side; the method must declare it")


@dataclass
class ForgetParams:
    """Parameters of a method that trains on the forget side only; ``forget_weight`` multiplies each forget
    sample's loss (-1: ascent on the NLL)."""

    forget_weight: float = -1.0  # multiplies each forget sample's loss (-1: ascent on the NLL)


@dataclass
class TwoSidedParams(ForgetParams):
    """Parameters of a method with a retain term; ``retain_weight`` multiplies each retain sample's loss."""

    retain_weight: float = 1.0  # multiplies each retain sample's loss


class Method:
    """Subclass, set the class attributes, implement the losses, decorate with ``@register``."""

    name: ClassVar[str]
    Params: ClassVar[type] = ForgetParams
    retain: ClassVar[bool] = False  # trains on retain data (the retention train split, or the general set)
    reference: ClassVar[frozenset] = frozenset()  # sides that need the frozen fine-tuned model's outputs
    hidden_states: ClassVar[bool] = False  # the losses read hidden states (Side.hidden_states)
    localized: ClassVar[bool] = False  # only meaningful inside a localized region: a region file is required

    def forget_loss(self, forget: Side, params) -> torch.Tensor:
        raise NotImplementedError

    def retain_loss(self, retain: Side, params) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no retain term")

    def relabel(self, features: list[dict], ctx: RelabelContext, params) -> list[dict]:
        """The forget features trained on (default: the gold answers; random or adversarial labels, refusals)."""
        return features

    def alternative_answers(self, features: list[dict], ctx: RelabelContext, params) -> list[dict] | None:
        """A second answer to each forget question, reaching the loss as ``forget.alternative`` (default none)."""
        return None

    def reference_sides(self, params) -> frozenset:
        """Sides whose reference outputs the losses read (may depend on the parameters)."""
        return self.reference

    def check(self, params) -> None:
        """Raise :class:`KnowUndoError` for parameter values out of range."""

    def resolve(self, params, model_config):
        """Parameters with model-dependent defaults filled in (e.g. a layer index scaled to the depth)."""
        return params

    def own_region(self, model, params) -> dict[str, torch.Tensor] | None:
        """A region the method defines itself (RMU: the layers up to its steering layer), or None."""
        return None

    def tensors(self, params, model_config) -> dict[str, torch.Tensor]:
        """Tensors the run must record beside its adapter (RMU: the steering vector)."""
        return {}

    def summary(self) -> str:
        """The first line of the method's docstring (what `knowundo methods` prints)."""
        return (self.__doc__ or "").strip().splitlines()[0] if self.__doc__ else ""


METHODS: dict[str, Method] = {}


def register(cls: type) -> type:
    """Class decorator: check the declaration and add one instance to :data:`METHODS` under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise TypeError(f"{cls.__qualname__}: a method needs a `name` that is an identifier, got {name!r}")
    fields = {f.name for f in dataclasses.fields(cls.Params)} if dataclasses.is_dataclass(cls.Params) else None
    if fields is None or "forget_weight" not in fields or (cls.retain and "retain_weight" not in fields):
        raise TypeError(
            f"{name}: Params must be a dataclass with forget_weight" + (" and retain_weight" if cls.retain else "")
        )
    if not set(cls.reference) <= set(SIDES):
        raise TypeError(f"{name}: reference must be a subset of {SIDES}")
    previous = METHODS.get(name)
    if previous is not None and (type(previous).__module__, type(previous).__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):
        raise TypeError(f"two methods are named {name!r}: {type(previous).__module__} and {cls.__module__}")
    METHODS[name] = cls()
    return cls


def build_params(method: Method, values: dict[str, Any], where: str):
    """The method's parameter dataclass with ``values`` applied (unknown keys, wrong types and values out of
    range are errors)."""
    params = method.Params()
    merge_settings(params, values, where)
    method.check(params)
    return params
