"""Independent jobs — the rows of a run, the points of a sweep — one after another here, or side by side as Ray
tasks (``run.executor``).

Ray is the engine: a local cluster started for the run (``ray.init()``, stopped after it) or an existing one
(``run.ray_address``); each job a task declaring ``run.ray_cpus`` CPUs and, where the cluster has GPUs, one GPU.
A job is a function of picklable arguments that does its own caching (a stage's output keyed by its inputs), so a
run killed mid-way and started again finds the jobs that finished and redoes only the rest, whichever executor ran
them. Each task computes with ``run.ray_cpus`` threads: with a serial run's thread count its floating-point sums,
and so its results, are the serial run's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from knowundo.config import Config
from knowundo.errors import Interrupted, KnowUndoError

Job = tuple[Callable[..., Any], tuple]


def run_jobs(cfg: Config, jobs: list[Job], done: Callable[[Any], None]) -> None:
    """Call every job (``function(*args)``) and hand each result to ``done``: in order, in this process, for
    ``serial``; as each task finishes for ``ray``. A job's error (a :class:`KnowUndoError` as itself) stops the
    run; the other tasks are cancelled with the cluster."""
    if cfg.run.executor == "serial":
        for function, args in jobs:
            done(function(*args))
        return
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=cfg.run.ray_address or None,
            include_dashboard=False,
            log_to_driver=False,  # the stage lines come back as results; workers' progress output would interleave
            configure_logging=False,
        )
    try:
        resources = ray.cluster_resources()
        if cfg.run.ray_cpus > resources.get("CPU", 0):
            raise KnowUndoError(
                f"run.ray_cpus={cfg.run.ray_cpus} but the Ray cluster has {resources.get('CPU', 0):g} CPUs: "
                f"no task could start; lower it"
            )
        gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        task = ray.remote(_in_worker).options(num_cpus=cfg.run.ray_cpus, num_gpus=gpus, max_retries=0)
        pending = [task.remote(function, args, cfg.run.ray_cpus) for function, args in jobs]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, (KnowUndoError, Interrupted)):
                    raise cause from None
                raise
            done(result)
    finally:
        if started_here:
            ray.shutdown()


def _in_worker(function: Callable[..., Any], args: tuple, threads: int) -> Any:
    """A job inside a Ray worker, set up as the command line sets up its own process."""
    import torch
    from transformers.utils import logging as hf_logging

    from knowundo.known_warnings import silence_known

    silence_known()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(threads)
    return function(*args)
