"""Several processes (``torchrun`` or ``accelerate launch``): Trainer and accelerate shard the training; the
stages make sure that only the main process writes and that the others wait for it.

A single process (the default) pays nothing: every helper is a no-op when ``WORLD_SIZE`` is unset or 1.
"""

from __future__ import annotations

import os

from knowundo.errors import KnowUndoError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def _process_group():
    """The launcher's process group (gloo on CPU, nccl on GPUs), joined on first use; Trainer and accelerate reuse
    a group that already exists. (``accelerate.PartialState()`` asked without ``cpu=True`` on a CPU would settle on
    a single-process state and Trainer would then skip DDP: :mod:`knowundo.placement` asks it with the Trainer's
    own flag.)"""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist


def barrier() -> None:
    if world_size() > 1:
        _process_group().barrier()


def all_reduce_sum(tensor):
    """Sum ``tensor`` over all processes (localization: every process scores its share of items), on this
    process's device (NCCL reduces GPU tensors only); returned there."""
    if world_size() > 1:
        from knowundo.placement import device

        dist = _process_group()
        tensor = tensor.to(device())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def on_any_process(flag: bool) -> bool:
    """Whether ``flag`` holds on at least one process (one all-reduce of a number; ``flag`` itself when
    alone): every process takes the same branch, so none is left waiting at a later collective."""
    if world_size() == 1:
        return flag
    import torch

    from knowundo.placement import device

    dist = _process_group()
    value = torch.tensor([float(flag)], device=device())  # NCCL reduces tensors on this process's GPU only
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def per_process_batch(batch_size: int, grad_accum: int, processes: int | None = None) -> tuple[int, int]:
    """(per-device batch, accumulation steps) so that per-device x accumulation x processes equals the
    configured batch_size x grad_accum whatever the process count: results must not depend on the number of
    GPUs. Accumulation is divided first (micro-batches keep their size), then the per-device batch."""
    processes = processes or world_size()
    if grad_accum % processes == 0:
        return batch_size, grad_accum // processes
    if batch_size % processes == 0:
        return batch_size // processes, grad_accum
    raise KnowUndoError(
        f"effective batch {batch_size} x {grad_accum} cannot be split over {processes} processes "
        f"(one of batch_size, grad_accum must be divisible by {processes})"
    )
