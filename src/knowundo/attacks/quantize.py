"""The quantization attack (Zhang et al. 2024, arXiv 2410.16454): quantizing an unlearned model can restore the
knowledge it was trained to forget. Unlearning with a small learning rate moves the weights so little that
rounding them to a 4- or 8-bit grid often lands on the same grid points as the original model's, undoing the edit.

``quantized(model, scheme)`` runs a block on the merged-then-quantized model — what a user gets by merging the
LoRA adapter, saving the model and loading it in 4 or 8 bit — and restores the model exactly afterwards. Two
schemes are simulated in torch ("fake quantization": quantize, then de-quantize back to the weight's dtype):
round-to-nearest integers with a per-group scale (GPTQ/AWQ-style grids without their calibration) and
bitsandbytes' NF4 (QLoRA, Dettmers et al. 2023, arXiv 2305.14314), run through bitsandbytes itself where it can.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from peft.tuners.lora import LoraLayer
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from peft.utils import TrainableTokensWrapper
from torch import nn
from transformers.pytorch_utils import Conv1D

from knowundo.config import QUANT_SCHEME, QUANT_SCHEME_SYNTAX
from knowundo.errors import KnowUndoError

_PREFIX = {"int": "rtn", "nf": "nf4"}

# The NormalFloat4 table, copied value for value from bitsandbytes.functional.get_4bit_type("nf4") (0.50.2):
# quantiles of N(0, 1) normalized to [-1, 1], with an exact zero.
NF4_CODEBOOK = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)
_BNB_BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)  # what bitsandbytes' quantize_4bit accepts


@dataclass(frozen=True)
class QuantScheme:
    """A weight quantization scheme: ``rtn`` (symmetric integers, ``bits`` 4 or 8) or ``nf4`` (always 4 bits),
    with one scale per ``group_size`` weights."""

    kind: str
    bits: int
    group_size: int

    def __post_init__(self) -> None:
        if self.kind not in _PREFIX.values():
            raise KnowUndoError(f"unknown quantization kind {self.kind!r}; use {QUANT_SCHEME_SYNTAX}")
        if self.bits not in ((4,) if self.kind == "nf4" else (4, 8)):
            raise KnowUndoError(f"{self.kind} quantization cannot use {self.bits} bits; use {QUANT_SCHEME_SYNTAX}")
        if self.group_size < 1:
            raise KnowUndoError(f"quantization group size must be >= 1, got {self.group_size}")

    @property
    def name(self) -> str:
        return f"{'nf' if self.kind == 'nf4' else 'int'}{self.bits}-g{self.group_size}"


def parse_scheme(text: str) -> QuantScheme:
    """``int8-g128`` -> QuantScheme("rtn", 8, 128); ``nf4-g64`` -> QuantScheme("nf4", 4, 64)."""
    match = QUANT_SCHEME.fullmatch(text)
    if not match:
        raise KnowUndoError(f"bad quantization scheme {text!r}; use {QUANT_SCHEME_SYNTAX}")
    prefix, bits, group = match.groups()
    return QuantScheme(_PREFIX[prefix], int(bits), int(group))


def quantize_rtn(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Round-to-nearest with a symmetric absmax scale per group of ``group_size`` consecutive input features of
    each output row (``weight`` is (out, in), as nn.Linear stores it); de-quantized, in ``weight``'s dtype.
    The last group is zero-padded, which leaves its absmax unchanged."""
    qmax = 2 ** (bits - 1) - 1
    out_features, in_features = weight.shape
    pad = -in_features % group_size
    groups = F.pad(weight.float(), (0, pad)).view(out_features, -1, group_size)
    scale = groups.abs().amax(-1, keepdim=True) / qmax
    quantized = torch.round(groups / scale.where(scale > 0, 1.0)).clamp(-qmax, qmax) * scale
    return quantized.view(out_features, -1)[:, :in_features].to(weight.dtype)


def nf4_path(group_size: int) -> str:
    """Which implementation ``quantize_nf4`` uses: bitsandbytes' own kernels when CUDA is there (they are what a
    user's 4-bit load runs) and the block size is one they accept, else the equivalent torch code."""
    if not torch.cuda.is_available() or group_size not in _BNB_BLOCKSIZES:
        return "torch"
    try:
        import bitsandbytes.functional  # noqa: F401
    except ImportError:
        return "torch"
    return "bitsandbytes"


def quantize_nf4(weight: torch.Tensor, group_size: int = 64) -> torch.Tensor:
    """NF4 as bitsandbytes does it: absmax per block of ``group_size`` values of the flattened tensor, each
    normalized value replaced by the nearest NF4_CODEBOOK entry; de-quantized, in ``weight``'s dtype."""
    if nf4_path(group_size) == "bitsandbytes":
        from bitsandbytes.functional import dequantize_4bit, quantize_4bit

        packed, state = quantize_4bit(weight.to("cuda", torch.float32), blocksize=group_size, quant_type="nf4")
        return dequantize_4bit(packed, state).to(weight.device, weight.dtype)
    flat = weight.float().flatten()
    blocks = F.pad(flat, (0, -flat.numel() % group_size)).view(-1, group_size)
    absmax = blocks.abs().amax(-1, keepdim=True)
    code = torch.tensor(NF4_CODEBOOK, device=weight.device)
    # Nearest entry by bisection on the midpoints: a (values x 16) distance matrix would not fit for 7B layers.
    index = torch.bucketize(blocks / absmax.where(absmax > 0, 1.0), (code[1:] + code[:-1]) / 2)
    return (code[index] * absmax).flatten()[: flat.numel()].view_as(weight).to(weight.dtype)


def _quantize(weight: torch.Tensor, scheme: QuantScheme) -> torch.Tensor:
    if scheme.kind == "nf4":
        return quantize_nf4(weight, scheme.group_size)
    return quantize_rtn(weight, scheme.bits, scheme.group_size)


def _own_weight(module: nn.Module) -> nn.Parameter:
    """The weight a module wraps: a LoRA layer's base weight; for embedding rows the adapter trains, the original
    embedding's (the wrapper's ``weight`` is another tensor)."""
    if isinstance(module, LoraLayer):
        return module.get_base_layer().weight
    if isinstance(module, TrainableTokensWrapper):
        return module.token_adapter.base_layer.weight
    return module.weight


def _merged_weights(model: nn.Module) -> Iterator[tuple[nn.Module, torch.Tensor, bool]]:
    """(layer, its weight plus the active adapters' LoRA deltas, whether to quantize it) for every LoRA-wrapped
    layer and every other linear layer of the base model; embeddings whose rows the adapter trains
    (``lora.train_embeddings``) come with those rows, unquantized.

    Not quantized: the output head and the embeddings, which transformers' bitsandbytes loading keeps in full
    precision (``llm_int8_skip_modules`` defaults to the output embeddings, and embeddings are not linear layers)
    because the head is where quantization costs the most quality. A LoRA delta on them is still merged,
    unquantized, so the block sees the whole fine-tuned model. The LoRA matrices themselves are never targets.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    wrappers = [m for m in base.modules() if isinstance(m, LoraLayer)]
    inside = {id(m) for wrapper in wrappers for m in wrapper.modules() if m is not wrapper}
    kept = [m for m in (base.get_input_embeddings(), base.get_output_embeddings()) if m is not None]
    full_precision = {id(_own_weight(m)) for m in kept}
    for module in base.modules():
        wrapped = isinstance(module, LoraLayer)
        layer = module.get_base_layer() if wrapped else module
        if not wrapped and id(module) in inside:
            continue
        quantize = isinstance(layer, (nn.Linear, Conv1D)) and id(layer.weight) not in full_precision
        if not (wrapped or quantize):
            continue
        weight = layer.weight.float()
        if wrapped and not module.disable_adapters:
            if module.merged or any(module.lora_variant.get(a) or module.lora_bias.get(a) for a in module.lora_A):
                raise KnowUndoError(
                    "the quantization attack needs unmerged plain LoRA adapters (no DoRA or "
                    "other variants, no lora_bias)"
                )
            for adapter in module.active_adapters:
                if adapter in module.lora_A:
                    weight = weight + module.get_delta_weight(adapter).float()
        yield layer, weight, quantize
    for module in base.modules():
        # a head tied to the embeddings shares their weight: merged once, with them
        if isinstance(module, TrainableTokensLayer) and not module.disable_adapters and module.tied_adapter is None:
            adapters = [adapter for adapter in module.active_adapters if adapter in module.token_indices]
            yield module.base_layer, module.get_merged_weights(adapters).float(), False


@contextlib.contextmanager
def quantized(model: nn.Module, scheme: QuantScheme | str) -> Iterator[dict[str, object]]:
    """Run the block on ``model`` (a PeftModel or a plain transformers model) merged with its active LoRA adapter
    and quantized with ``scheme``; on exit, even on an exception, the original weights are put back bit for bit
    (kept on the CPU meanwhile, so a GPU never holds two copies of the model), the adapter is active again and
    every ``requires_grad`` is as before (peft's ``disable_adapter`` would leave an adapter loaded for inference
    trainable).

    Inside, the adapter is disabled and the weights hold the merged-then-quantized values, so LoRA dropout never
    runs. GPT-2's transposed ``Conv1D`` weights are quantized as (out, in), as bitsandbytes stores them. Yields
    {"scheme", "path" ("torch" or "bitsandbytes"), "layers" (how many were quantized), "mean_abs_change" (mean
    |quantized - merged| over the quantized weights)}.
    """
    scheme = parse_scheme(scheme) if isinstance(scheme, str) else scheme
    trainable = {param: param.requires_grad for param in model.parameters()}
    originals: dict[nn.Parameter, torch.Tensor] = {}
    layers, change, count = 0, 0.0, 0
    try:
        with torch.no_grad():
            for layer, weight, quantize in _merged_weights(model):
                if layer.weight in originals:
                    continue  # a tied weight, already done
                if quantize:
                    transposed = isinstance(layer, Conv1D)
                    merged = weight.t() if transposed else weight
                    new = _quantize(merged, scheme)
                    change += (new.float() - merged).abs().sum().item()
                    count += new.numel()
                    layers += 1
                    weight = new.t() if transposed else new  # noqa: PLW2901 (what is written back)
                originals[layer.weight] = layer.weight.data.to("cpu")  # on a GPU: one copy of the weights there
                layer.weight.data = weight.to(layer.weight.dtype).contiguous()
        adapter_off = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
        with adapter_off:
            yield {
                "scheme": scheme.name,
                "path": "torch" if scheme.kind == "rtn" else nf4_path(scheme.group_size),
                "layers": layers,
                "mean_abs_change": change / max(count, 1),
            }
    finally:
        for param, original in originals.items():
            param.data = original.to(param.device)
        for param, requires_grad in trainable.items():
            param.requires_grad_(requires_grad)
