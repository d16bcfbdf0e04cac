"""`knowundo run`: the whole benchmark, stage by stage, resumable.

For each domain: fine-tune -> evaluate the fine-tuned ("vanilla") model -> localize (if a method needs a region)
-> every method: unlearn -> evaluate; then one report for the run. Every stage's output is keyed by a hash of its
inputs, so a finished stage is skipped, an interrupted one resumes from its last checkpoint, and a directory of
other settings is refused. ``--force STAGE`` redoes that stage and everything after it.

Layout: ``OUT/run.json`` (resolved config, versions, data hashes), ``OUT/<domain>/finetune``, ``localize``,
``unlearn/<label>``, ``eval/<label>.json``, and ``OUT/report``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from knowundo.artifacts import hash_json, library_versions, read_json, write_json
from knowundo.config import Config
from knowundo.data.knowundo import DataSource, check_domain, load_domain
from knowundo.distributed import barrier, is_main, world_size
from knowundo.errors import KnowUndoError
from knowundo.methods import get_method

STAGES = ("finetune", "localize", "unlearn", "eval", "report")
OOD_SUFFIX = "_ood"


@dataclass(frozen=True)
class MethodRun:
    """One row of the comparison: a registered method, retaining on the retention scope or (``_ood``) on the
    general-knowledge set."""

    label: str
    method: str
    retain: str

    @classmethod
    def parse(cls, label: str) -> "MethodRun":
        name, retain = (label[: -len(OOD_SUFFIX)], "general") if label.endswith(OOD_SUFFIX) else (label, "retention")
        method = get_method(name)
        if retain == "general" and method.retain_weight is None:
            raise KnowUndoError(f"method {label!r}: {name} uses no retain data, so it has no out-of-distribution "
                                f"variant")
        return cls(label, name, retain)


def settings_key(cfg: Config) -> str:
    """What makes two runs comparable in one directory: everything except evaluation and run coverage (those
    may change between invocations; evaluations are re-keyed on their own)."""
    return hash_json({k: v for k, v in cfg.to_dict().items() if k not in ("eval", "run")})


def expand_force(stages: list[str]) -> set[str]:
    """A forced stage and everything downstream of it."""
    forced = set()
    for stage in stages:
        if stage not in STAGES:
            raise KnowUndoError(f"unknown stage {stage!r} for --force; choose from {', '.join(STAGES)}")
        forced |= set(STAGES[STAGES.index(stage):])
    return forced


class StageLog:
    """One line per stage, with its wall time; totals per stage kind at the end (so the budget is visible)."""

    def __init__(self, echo: Callable[[str], None]):
        self.echo, self.seconds = echo, {}

    def run(self, kind: str, where: str, work: Callable[[], tuple[str, bool]]):
        started = time.perf_counter()
        summary, cached = work()
        elapsed = time.perf_counter() - started
        self.seconds[kind] = self.seconds.get(kind, 0.0) + elapsed
        self.echo(f"[{where}] {kind:9} {'cached' if cached else f'{elapsed:6.1f}s'}  {summary}")

    def totals(self) -> str:
        parts = [f"{kind} {seconds:.0f}s" for kind, seconds in self.seconds.items()]
        return f"time per stage: {', '.join(parts)}; total {sum(self.seconds.values()):.0f}s"


def _check_run_dir(out: Path, cfg: Config) -> None:
    record = out / "run.json"
    if record.is_file():
        try:
            previous = read_json(record).get("settings_key")
        except ValueError:
            raise KnowUndoError(f"{record}: not a readable run record; choose another output directory") from None
        if previous != settings_key(cfg):
            raise KnowUndoError(f"{out} holds a run of other settings (key {previous}, now {settings_key(cfg)}); "
                                f"choose another --out or remove it")
    elif out.is_dir() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        raise KnowUndoError(f"{out} exists and is not a knowundo run directory; choose another --out")


def _remove(path: Path) -> None:
    for target in (path, path.with_name(path.name + ".partial")):
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def _print_now(line: str) -> None:
    print(line, flush=True)


def _silent(line: str) -> None:
    pass


def run_benchmark(cfg: Config, out: str | Path, force: list[str] = (), progress: bool = True,
                  echo: Callable[[str], None] = _print_now) -> Path:
    """Run (or resume) the benchmark under ``out``; returns the report directory."""
    from knowundo.evaluate.run import eval_key, evaluate_checkpoint
    from knowundo.finetune import finetune
    from knowundo.localize import localize
    from knowundo.report import build_report
    from knowundo.unlearn import unlearn

    out = Path(out)
    domains = [check_domain(d) for d in cfg.run.domains]
    runs = [MethodRun.parse(label) for label in cfg.run.methods]
    if not domains:
        raise KnowUndoError("run.domains is empty")
    if len({r.label for r in runs}) != len(runs):
        raise KnowUndoError(f"run.methods lists a method twice: {', '.join(cfg.run.methods)}")
    forced = expand_force(list(force))
    for domain in domains:
        cfg.eval.check_prompts(domain)
    _check_run_dir(out, cfg)
    source = DataSource.from_config(cfg.data)
    if is_main():
        write_json(out / "run.json", {
            "settings_key": settings_key(cfg), "seed": cfg.seed, "domains": domains,
            "methods": [r.label for r in runs], "processes": world_size(),
            "data_hashes": {d: hash_json(load_domain(source, d)) for d in domains}, "config": cfg.to_dict(),
            "versions": library_versions()})
    else:
        echo = _silent  # one process reports
    barrier()

    log = StageLog(echo)
    for domain in domains:
        root = out / domain
        if is_main():
            for stage, path in (("finetune", root / "finetune"), ("localize", root / "localize"),
                                ("eval", root / "eval"), *(("unlearn", root / "unlearn" / r.label) for r in runs)):
                if stage in forced:
                    _remove(path)
        barrier()

        def evaluate(label: str, adapter: Path) -> tuple[str, bool]:
            """On the main process only (the others wait): evaluation is cheap next to training."""
            target = root / "eval" / f"{label}.json"
            key = eval_key(cfg, domain, adapter, label)
            cached = target.is_file() and read_json(target).get("meta", {}).get("key") == key
            if is_main() and not cached:
                evaluate_checkpoint(cfg, domain, adapter, target, label=label, progress=progress)
            barrier()
            result = read_json(target)
            first = result["prompts"][cfg.eval.prompts[0]]
            return (f"{label}: Unlearn {first['unlearn_success']:.1f}  Retention {first['retention_success']:.1f}  "
                    f"Avg {first['avg_success']:.1f} (prompt {cfg.eval.prompts[0]})"), cached

        def do_finetune() -> tuple[str, bool]:
            done = (root / "finetune" / "finetune.json").is_file()
            record = finetune(cfg, domain, root / "finetune", progress=progress)
            return f"{record['items']} items, train loss {record['train_loss']:.4f}", done

        log.run("finetune", domain, do_finetune)
        adapter = root / "finetune" / "adapter"
        log.run("eval", domain, lambda: evaluate("vanilla", adapter))

        region = None
        if any(get_method(r.method).needs_region for r in runs):
            def do_localize() -> tuple[str, bool]:
                done = (root / "localize" / "gradients.json").is_file()
                record = localize(cfg, domain, adapter, root / "localize", progress=progress)
                return (f"{record['selected_units']} of {record['total_units']} units in "
                        f"{record['selected_parameters']} LoRA matrices ({record['granularity']})"), done

            log.run("localize", domain, do_localize)
            region = root / "localize" / "region.json"

        for run in runs:
            run_dir = root / "unlearn" / run.label

            def do_unlearn() -> tuple[str, bool]:
                done = (run_dir / "unlearn.json").is_file()
                needs_region = get_method(run.method).needs_region
                record = unlearn(cfg, domain, run.method, adapter, run_dir, retain=run.retain,
                                 region=region if needs_region else None, progress=progress)
                early = record["stopped_early"]
                stopped = f", stopped early at step {early['step']}" if early else ""
                return f"{run.label}: {record['steps']} steps, {record['seconds_per_step']:.2f}s/step{stopped}", done

            log.run("unlearn", domain, do_unlearn)
            log.run("eval", domain, lambda: evaluate(run.label, run_dir / "adapter"))

    def do_report() -> tuple[str, bool]:
        report = build_report(out) if is_main() else out / "report"
        barrier()
        return f"tables and plots -> {report}", False

    log.run("report", "all", do_report)
    echo(log.totals())
    return out / "report"
