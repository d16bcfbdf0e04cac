"""Trainer callbacks every stage uses: the epoch a dataset serves, a progress bar without printed logs, a graceful
Ctrl-C, train token accuracy and peak memory."""

from __future__ import annotations

import math
import re
import resource
import signal
import sys
import threading

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from knowundo.data.format import IGNORE
from knowundo.distributed import all_reduce_sum


class SetEpoch(TrainerCallback):
    """Tells a dataset which epoch begins (a resumed one from its fractional start). accelerate's dataloader does
    so too, but only when its sampler takes no epoch (an ``elif`` in accelerate 1.15); this does not depend on it."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor(state.epoch + 1e-6))


class BarOnly(ProgressCallback):
    """The progress bar without a printed dict per logging step (losses are kept in the stage record)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


class GracefulStop(TrainerCallback):
    """First Ctrl-C (SIGINT): finish the current optimizer step, save a checkpoint and stop, so that the same
    command resumes from there. A second Ctrl-C aborts at once (nothing finished is lost either way: stages
    only publish complete outputs)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nknowundo: stopping after this step (Ctrl-C again to abort now)", file=sys.stderr, flush=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self.restore()

    def restore(self) -> None:
        """Give Ctrl-C back to whoever had it (also when training raised)."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class TokenAccuracy(TrainerCallback):
    """Train-set token accuracy per epoch: the share of answer tokens the model predicted (argmax) in the forward
    passes the loss already made during that epoch (no extra pass; summed over processes). With a ``target``,
    training stops at the end of the first epoch that reaches it."""

    def __init__(self, target: float | None = None):
        self.target = target
        self.per_epoch: list[float] = []
        self._counts: torch.Tensor | None = None  # correct, total answer tokens of the epoch so far

    @torch.no_grad()
    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        gold = labels[:, 1:]
        mask = gold != IGNORE
        predicted = logits[:, :-1].argmax(-1)
        counts = torch.stack([(predicted[mask] == gold[mask]).sum(), mask.sum()]).to(torch.float64)
        # kept on the logits' device: no host synchronisation per training step
        self._counts = counts if self._counts is None else self._counts + counts

    def on_epoch_end(self, args, state, control, **kwargs):
        counts = self._counts if self._counts is not None else torch.zeros(2, dtype=torch.float64)
        correct, total = all_reduce_sum(counts.clone()).tolist()
        self._counts = None
        self.per_epoch.append(correct / total if total else 0.0)
        if self.target is not None and self.per_epoch[-1] >= self.target:
            control.should_training_stop = True

    @property
    def reached(self) -> bool | None:
        return None if self.target is None else bool(self.per_epoch) and self.per_epoch[-1] >= self.target


def _status_mb(field: str) -> float | None:
    """A memory figure the kernel keeps for this process (``VmHWM``: peak resident set), in MB."""
    try:
        with open("/proc/self/status") as handle:
            found = re.search(rf"^{field}:\s+(\d+) kB", handle.read(), re.M)
    except OSError:
        return None
    return int(found.group(1)) / 1024 if found else None


def _reset_peak_rss() -> bool:
    """Resets the kernel's peak resident set of this process (Linux: ``5`` to ``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


class PeakMemory(TrainerCallback):
    """Peak memory while the Trainer trains (model loading excluded; paper Table 5), from the counters the runtime
    keeps itself, so nothing polls beside the training: CUDA's peak of allocated memory on a GPU; on a CPU the
    kernel's peak resident set of the process (interpreter and libraries included), reset when training begins.
    Where the kernel cannot reset it, the peak since the process started (``since``: ``"process start"``).
    ``start_mb`` is the level when training begins."""

    def __init__(self):
        self.start_mb = self.peak_mb = 0.0
        self.since = "training start"

    def on_train_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            self.start_mb = torch.cuda.memory_allocated() / 2**20
            return
        if not _reset_peak_rss():
            self.since = "process start"
        self.start_mb = _status_mb("VmRSS") or 0.0

    def on_train_end(self, args, state, control, **kwargs):
        self.stop()

    def stop(self) -> float:
        """The peak in MB (also read after an exception inside training)."""
        if torch.cuda.is_available():
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = _status_mb("VmHWM")
            self.peak_mb = peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return self.peak_mb
