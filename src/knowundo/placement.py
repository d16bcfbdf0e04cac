"""Where a model runs: the one decision every stage asks for, instead of guessing from a model's parameters.

The device is accelerate's for this process (``PartialState``): the local GPU under ``torchrun`` or ``accelerate
launch`` (NCCL), the GPU on a single-GPU machine, the CPU where there is none (or ``ACCELERATE_TORCH_DEVICE``,
accelerate's own override). It is asked with ``cpu`` set exactly as the Trainer's ``use_cpu``
(:func:`knowundo.models.training.training_arguments`), so that the Trainer, created later, finds the same state.
"""

from __future__ import annotations

import os
import platform

import torch


def device() -> torch.device:
    """This process's device: where every model pass, its inputs and every collective tensor go."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available()).device


def place(model):
    """``model`` moved to :func:`device` (in place for a module; returned for chaining)."""
    return model.to(device())


def on_device(batch: dict) -> dict:
    """A batch's tensors moved to :func:`device`."""
    target = device()
    return {key: value.to(target) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def describe() -> str:
    """The device as a stage record states it (``cpu``, ``cuda:0``)."""
    target = device()
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", torch.cuda.current_device())
    return str(target)


def supports_bf16() -> bool:
    """Whether :func:`device` computes in bfloat16 natively: a GPU that has it, or a CPU with bfloat16 matrix
    instructions (AVX512-BF16 or AMX), where oneDNN's bfloat16 matrix products beat float32 ones. A CPU without
    them emulates bfloat16, slower than float32."""
    target = device()
    if target.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # torch's own CPU feature probes (private, hence looked up; a torch without them reports no support)
    probes = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return target.type == "cpu" and any(probe is not None and probe() for probe in probes)


def machine() -> dict:
    """What a run computed on, as its record states it: the platform, the CPU count and this process's device (with
    the GPU's name)."""
    described = {"platform": platform.platform(), "cpus": os.cpu_count(), "device": describe()}
    if device().type == "cuda":
        described["gpu"] = torch.cuda.get_device_name(device())
    return described
