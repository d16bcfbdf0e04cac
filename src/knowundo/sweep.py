"""`knowundo sweep`: a fair hyperparameter search, chosen on items no table reports.

Every row of ``sweep.rows`` is trained at each point of its grid — the learning rates of ``sweep.learning_rates``
times the values of its own parameters in ``sweep.params`` — with the same number of trainings for every row
(``sweep.budget``: a row with a larger grid gets a seeded sample of its points). Each training is scored on the
selection split (``data.selection``: train items set aside, which the model knows but no row unlearns on), and one
point per row is chosen by the declared rule ``sweep.rule`` (:mod:`knowundo.evaluate.selection`). The val items the
tables report are never read.

Layout: the fine-tune, oracle and region of a run (``OUT/<domain>/finetune`` ...), each training in
``OUT/<domain>/sweep/<label>/<point>/`` with its scores, and ``OUT/report/``: ``sweep.json`` (every point, the
references and the choices), ``sweep.md`` / ``sweep.csv``, a Pareto plot per domain and ``chosen_<domain>.yaml``, the
chosen settings as a config file for `knowundo run --config`. Resumable like a run: a finished training or score
is never redone.
"""

from __future__ import annotations

import copy
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from knowundo.artifacts import write_json
from knowundo.config import BUILT_IN_MODELS, Config
from knowundo.data.knowundo import DataSource, check_domain
from knowundo.distributed import world_size
from knowundo.errors import KnowUndoError
from knowundo.evaluate.selection import SCORES, choose, selection_scores
from knowundo.executor import run_jobs
from knowundo.layout import (
    ADAPTER_DIR,
    ORACLE_LABEL,
    RUN_RECORD,
    SELECTION_SCORES,
    SWEEP_RESULTS,
    VANILLA_LABEL,
    RunLabel,
    RunLayout,
    report_dir,
)
from knowundo.methods import check_label, method_params
from knowundo.pipeline import DomainRun, StageLog, check_run_dir, kept_in, needs_region, prepare_built_in, run_record
from knowundo.plugins import load_plugins
from knowundo.preflight import preflight
from knowundo.report import sweep_report
from knowundo.stage import Stage


@dataclass(frozen=True)
class Point:
    """One training of a sweep: a row at one learning rate and one value of each of its swept parameters."""

    label: RunLabel
    learning_rate: float
    params: tuple[tuple[str, object], ...] = ()

    @property
    def name(self) -> str:
        """Its directory name: ``lr0.01`` or ``lr0.01_beta0.1``."""
        return "_".join([f"lr{self.learning_rate:g}", *(f"{key}{value:g}" for key, value in self.params)])

    def config(self, cfg: Config) -> Config:
        """``cfg`` with this point's learning rate and parameters as the row label's own settings (over any the
        method or label already had)."""
        point = copy.deepcopy(cfg)
        label = self.label.label
        point.unlearn.per_method = {
            **point.unlearn.per_method,
            label: {**point.unlearn.per_method.get(label, {}), "learning_rate": self.learning_rate},
        }
        if self.params:
            point.unlearn.method_args = {
                **point.unlearn.method_args,
                label: {**point.unlearn.method_args.get(label, {}), **dict(self.params)},
            }
        return point

    def settings(self) -> dict:
        return {"learning_rate": self.learning_rate, **dict(self.params)}


def sweep_grid(cfg: Config) -> dict[str, list[Point]]:
    """Row label -> its points, in grid order (learning rate first), each row given ``sweep.budget`` of them;
    every setting checked first (one-line errors)."""
    sweep = cfg.sweep
    if not sweep.rows:
        raise KnowUndoError("sweep.rows is empty; name the row labels to sweep, e.g. --rows ga_gd,npo,memflex")
    if len(set(sweep.rows)) != len(sweep.rows):
        raise KnowUndoError(f"sweep.rows lists a row twice: {', '.join(sweep.rows)}")
    labels = [RunLabel.parse(row) for row in sweep.rows]
    methods = {label.method for label in labels}
    for name, grids in sweep.params.items():
        if name not in methods:
            raise KnowUndoError(f"sweep.params.{name}: {name} is not a method of sweep.rows ({', '.join(sweep.rows)})")
        if not isinstance(grids, dict) or not all(isinstance(v, list) and v for v in grids.values()):
            raise KnowUndoError(f"sweep.params.{name} must map parameter names to non-empty lists of values")
    grids = {}
    for label in labels:
        check_label(label)
        own = sweep.params.get(label.method, {})
        combos = list(itertools.product(*own.values()))
        grids[label.label] = [
            Point(label, float(lr), tuple(zip(own, values))) for lr in sweep.learning_rates for values in combos
        ]
        for point in grids[label.label]:  # unknown parameters and bad values fail now, not after training
            point_cfg = point.config(cfg)
            method_params(point_cfg.unlearn.method_args, label.method, label.label)
            point_cfg.unlearn.for_method(label.method, label.label)
    smallest = min(len(points) for points in grids.values())
    budget = sweep.budget or smallest
    if budget > smallest:
        short = next(row for row, points in grids.items() if len(points) == smallest)
        raise KnowUndoError(
            f"sweep.budget={budget} but {short}'s grid has {smallest} points: every row gets the same budget; "
            f"lower it or give {short} more values"
        )
    return {
        row: points
        if len(points) == budget
        else [points[i] for i in sorted(random.Random(f"{cfg.seed}/sweep/{row}").sample(range(len(points)), budget))]
        for row, points in grids.items()
    }


def check_sweep(cfg: Config) -> tuple[list[str], dict[str, list[Point]]]:
    """(domains, grid), everything a sweep needs checked before any work."""
    load_plugins(cfg.plugins)
    if world_size() > 1:
        raise KnowUndoError(
            "knowundo sweep runs in one process (its points side by side with run.executor=ray); launch it "
            "without accelerate or torchrun"
        )
    if cfg.data.selection <= 0:
        raise KnowUndoError(
            "a sweep chooses on the selection split, never on the reported val items: set data.selection "
            "(e.g. --set data.selection=0.2), and the same value in the run that uses the chosen settings"
        )
    if cfg.sweep.rule == "oracle_match" and not cfg.run.oracle:
        raise KnowUndoError("sweep.rule=oracle_match needs an oracle: set run.oracle=true (or run.oracle_model)")
    source = DataSource.from_config(cfg.data)
    domains = [check_domain(d, source) for d in cfg.run.domains]
    if not domains:
        raise KnowUndoError("run.domains is empty")
    grid = sweep_grid(cfg)
    for domain in domains:
        Stage("sweep", cfg, domain).selection("unlearn")  # the carve fails now if the data cannot give one
    return domains, grid


def run_sweep(
    cfg: Config,
    out: str | Path,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    command: str | None = None,
) -> Path:
    """Run (or resume) a sweep under ``out``; returns the report directory."""
    out = Path(out)
    domains, grid = check_sweep(cfg)
    if problems := preflight(cfg).problems:
        raise KnowUndoError(f"the preflight check found {len(problems)} problem(s): {'; '.join(problems)}")
    check_run_dir(out, cfg)
    record = {**run_record(cfg, domains, list(grid), command), "kind": "sweep"}
    write_json(out / RUN_RECORD, record)
    log = StageLog(kept_in(out, record, echo))
    if cfg.model.name in BUILT_IN_MODELS:
        log.run("model", "all", prepare_built_in, cfg, progress)
    results = {"rule": cfg.sweep.rule, "tolerance": cfg.sweep.general_tolerance, "domains": {}}
    references, jobs, scores = {}, [], {}
    for domain in domains:  # what the points start from and are compared with, then every point as a job
        layout = RunLayout(out / domain)
        stages = DomainRun(cfg, domain, layout, progress)
        if cfg.run.finetune:
            log.run("finetune", domain, stages.finetune)
        if cfg.run.oracle and not cfg.run.oracle_model:
            log.run("finetune", domain, stages.oracle)
        if any(needs_region(RunLabel.parse(row)) for row in grid):
            log.run("localize", domain, stages.localize)
        references[domain] = {}
        log.run("select", domain, _scored_references, stages, references[domain])
        for points in grid.values():
            for point in points:
                point_stages = DomainRun(point.config(cfg), domain, layout, progress and cfg.run.executor == "serial")
                jobs.append((_point_job, (point_stages, point)))

    def done(result: tuple[list[str], dict, tuple, dict]) -> None:
        lines, seconds, where, values = result
        log.merge((lines, seconds))
        scores[where] = values

    run_jobs(cfg, jobs, done)
    for domain in domains:
        rows = {}
        for row, points in grid.items():
            tried = [
                {"point": p.name, "settings": p.settings(), **_values(scores[(domain, row, p.name)])} for p in points
            ]
            index, reason = choose(tried, cfg.sweep.rule, references[domain], cfg.sweep.general_tolerance)
            reason += _at_edge(points[index].learning_rate, [float(lr) for lr in cfg.sweep.learning_rates])
            rows[row] = {"points": tried, "chosen": index, "reason": reason}
            log.echo(f"[{domain}] sweep {row}: chose {tried[index]['point']} ({reason})")
        refs = {name: _values(values) for name, values in references[domain].items()}
        results["domains"][domain] = {"references": refs, "rows": rows}
    report = report_dir(out)
    write_json(report / SWEEP_RESULTS, {**results, "config": cfg.to_dict()})
    log.run("report", "all", lambda: (f"sweep tables, Pareto plots, chosen settings -> {sweep_report(out)}", False))
    log.echo(log.totals())
    return report


def _at_edge(chosen: float, grid: list[float]) -> str:
    """A note when the chosen learning rate is the grid's lowest or highest: the best may lie beyond it."""
    if len(grid) < 2 or min(grid) < chosen < max(grid):
        return ""
    side = "lowest" if chosen == min(grid) else "highest"
    return f"; the grid's {side} learning rate: extend sweep.learning_rates beyond it"


def _values(scores: dict) -> dict:
    return {key: scores[key] for key in SCORES}


def _point_job(stages: DomainRun, point: Point) -> tuple[list[str], dict, tuple, dict]:
    """One point, here or as a Ray task: its unlearning run and its selection scores (stage lines, times, where,
    scores)."""
    lines: list[str] = []
    log = StageLog(lines.append)
    row, domain = point.label.label, stages.domain
    run_dir = stages.layout.sweep_point(row, point.name)
    log.run("unlearn", domain, stages.unlearn, point.label, run_dir)
    holder = {}

    def scored() -> tuple[str, bool]:
        target = run_dir / SELECTION_SCORES
        done = target.is_file()
        holder["scores"] = selection_scores(stages.cfg, domain, run_dir / ADAPTER_DIR, target)
        return f"{row} {point.name}: {_line(holder['scores'])}", done

    log.run("select", domain, scored)
    return lines, log.seconds, (domain, row, point.name), holder["scores"]


def _scored_references(stages: DomainRun, into: dict) -> tuple[str, bool]:
    """The vanilla model's and the oracle's selection scores, put ``into`` a mapping."""
    names = [VANILLA_LABEL, *([ORACLE_LABEL] if stages.cfg.run.oracle else [])]
    done = all(stages.tuned.selection_scores(name).is_file() for name in names)
    into.update(stages.references_on_selection)
    return "; ".join(f"{name}: {_line(scores)}" for name, scores in into.items()), done


def _line(scores: dict) -> str:
    return (
        f"selection UL {scores['unlearn_success']:.1f}  RT {scores['retention_success']:.1f}  "
        f"Avg {scores['avg_success']:.1f}  General {scores['general']:.1f}"
    )
