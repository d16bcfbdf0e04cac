"""RMU — Representation Misdirection for Unlearning (Li et al. 2024, WMDP, arXiv 2403.03218): push the hidden
states of layer ℓ on forget answers toward a fixed random direction scaled by c, and keep them equal to the
frozen fine-tuned model's on retain answers; only the layers ℓ−2…ℓ train (here: their LoRA matrices, as a
region of the method's own).

L = mean_i mean_t ‖h_ℓ(x_i)_t − c·u‖² / d + α · mean_j mean_t ‖h_ℓ(q_j)_t − h_ℓ^ref(q_j)_t‖² / d,
over the positions t that predict an answer token, d the hidden size, u a unit vector with entries drawn uniformly
from [0, 1) (seeded by ``steering_seed``; recorded in method_tensors.safetensors beside the adapter).

Defaults scaled to the model (the paper steers layer 7 of the 32 of Zephyr-7B, hidden 4096, with c = 6.5 and
α = 1200; open-unlearning uses c = 300, α = 1000 on Llama): ℓ = round(7/32 · layers) (0-based index of the decoder
layer whose output is steered), c = 6.5 · sqrt(hidden / 4096) (the same per-coordinate target size c/√d at any
width), α = 1200.
"""

import dataclasses
import math
from dataclasses import dataclass

import torch

from knowundo.data.format import IGNORE
from knowundo.errors import KnowUndoError
from knowundo.methods.base import Method, Side, TwoSidedParams, register
from knowundo.region import layer_region


@dataclass
class RMUParams(TwoSidedParams):
    forget_weight: float = 1.0
    retain_weight: float = 1200.0  # α
    layer: int | None = None  # decoder layer whose output is steered (0-based); None: round(7/32 · layers)
    steering_coeff: float | None = None  # c; None: 6.5 · sqrt(hidden / 4096)
    trained_layers: int = 3  # the LoRA matrices of layers ℓ−trained_layers+1 … ℓ train
    steering_seed: int = 0  # seed of the random steering direction


def _answer_mse(hidden: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean squared error per element at the positions that predict an answer token (position t predicts token
    t + 1, as everywhere in knowundo), averaged per sample: [batch]."""
    mask = labels[:, 1:] != IGNORE
    target = target[:, :-1] if target.dim() == 3 else target
    squared = (hidden[:, :-1].float() - target.float()).pow(2).mean(-1)
    return (squared * mask).sum(-1) / mask.sum(-1).clamp(min=1)


@register
class RMU(Method):
    """Steer layer-ℓ activations of forget answers to a random direction; keep them on retain answers."""

    name = "rmu"
    Params = RMUParams
    retain = True
    reference = frozenset({"retain"})
    hidden_states = True

    def check(self, params):
        if (params.layer is not None and params.layer < 0) or params.trained_layers < 1:
            raise KnowUndoError("unlearn.method_args.rmu: layer must be >= 0 and trained_layers >= 1")
        if params.steering_coeff is not None and params.steering_coeff <= 0:
            raise KnowUndoError("unlearn.method_args.rmu.steering_coeff must be > 0")

    def resolve(self, params, model_config):
        layers, hidden = model_config.num_hidden_layers, model_config.hidden_size
        layer = params.layer if params.layer is not None else min(layers - 1, round(7 / 32 * layers))
        if layer >= layers:
            raise KnowUndoError(f"unlearn.method_args.rmu.layer is {layer}, the model has {layers} layers")
        coeff = params.steering_coeff if params.steering_coeff is not None else 6.5 * math.sqrt(hidden / 4096)
        return dataclasses.replace(params, layer=layer, steering_coeff=coeff)

    def own_region(self, model, params):
        return layer_region(model, range(max(0, params.layer - params.trained_layers + 1), params.layer + 1))

    def tensors(self, params, model_config):
        return {"steering_vector": self._steering(params, model_config.hidden_size)}

    @staticmethod
    def _steering(params, hidden_size: int) -> torch.Tensor:
        u = torch.rand(hidden_size, generator=torch.Generator().manual_seed(params.steering_seed))
        return params.steering_coeff * u / u.norm()

    def forget_loss(self, forget: Side, params):
        forget.require("hidden_states")
        hidden = forget.hidden_states[params.layer + 1]
        target = self._steering(params, hidden.shape[-1]).to(hidden.device)
        return (forget.weight * _answer_mse(hidden, target, forget.labels)).mean()

    def retain_loss(self, retain: Side, params):
        retain.require("hidden_states", "reference_hidden_states")
        layer = params.layer + 1
        return (
            retain.weight
            * _answer_mse(retain.hidden_states[layer], retain.reference_hidden_states[layer], retain.labels)
        ).mean()
