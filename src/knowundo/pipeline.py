"""`knowundo run`: the whole benchmark, stage by stage, resumable.

For each domain: fine-tune -> fine-tune the oracle (Retention Scope only; or take ``run.oracle_model``) -> evaluate
the oracle, the base model and the fine-tuned one -> localize (if a row needs a region) -> every row label: unlearn
-> relearning attack -> evaluate (against the vanilla and oracle results); then one report for the run. Every stage's
output is keyed by a hash of its inputs, so a finished stage is skipped, an interrupted one resumes from its last
checkpoint, and a directory of other settings is refused. ``--force STAGE`` redoes that stage and everything after it.

Layout (:mod:`knowundo.layout`): ``OUT/run.json`` (resolved config, versions, data hashes),
``OUT/<domain>/finetune``, ``oracle``, ``localize``, ``unlearn/<label>`` (with ``relearn/`` inside),
``eval/<label>.json``, and ``OUT/report``. With ``run.seeds``, the rows of each other training seed (and, with
``run.seed_finetune``, its fine-tune and oracle) in ``OUT/<domain>/seeds/<seed>/``, laid out alike. With
``run.requests``, each request's regions, rows and evaluations in ``OUT/<domain>/requests/<r>/`` (:class:`RequestRun`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import gc
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from knowundo.artifacts import (
    checkpoint_steps,
    code_revision,
    hash_json,
    library_versions,
    read_json,
    remove_stale_temporaries,
    write_json,
)
from knowundo.attacks.relearn import relearn
from knowundo.config import BUILT_IN_MODELS, Config, keyed, run_seeds, seeded
from knowundo.data.knowundo import DataSource, check_domain, load_domain
from knowundo.distributed import barrier, is_main, on_any_process, world_size
from knowundo.errors import KnowUndoError
from knowundo.evaluate.run import eval_key, evaluate_checkpoint
from knowundo.evaluate.selection import choose_checkpoint, reported_adapter, selection_scores
from knowundo.executor import run_jobs
from knowundo.findings import findings_summary
from knowundo.finetune import finetune, target_missed
from knowundo.layout import (
    ADAPTER_DIR,
    BASE_LABEL,
    CHECKPOINTS_DIR,
    FINETUNE_RECORD,
    GRADIENTS_RECORD,
    ORACLE_LABEL,
    REGION_FILE,
    RELEARN_RECORD,
    RUN_RECORD,
    STAGES_LOG,
    UNLEARN_RECORD,
    VANILLA_LABEL,
    RequestRow,
    RunLabel,
    RunLayout,
    relearned_adapter,
    report_dir,
)
from knowundo.localize import localize, selection_for
from knowundo.methods import check_label, method_params
from knowundo.models.load import is_prepared, prepare_base, resolve_model_path
from knowundo.placement import machine
from knowundo.plugins import load_plugins
from knowundo.preflight import preflight
from knowundo.report import build_report, knowledge_warning
from knowundo.unlearn import unlearn

STAGES = ("finetune", "localize", "unlearn", "attack", "eval", "report")


def settings_key(cfg: Config) -> str:
    """What makes two runs comparable in one directory: everything except evaluation, attacks and run coverage
    (those may change between invocations; evaluations and attacks are re-keyed on their own)."""
    return hash_json({k: v for k, v in keyed(cfg.to_dict()).items() if k not in ("eval", "attack", "run", "sweep")})


def expand_force(stages: list[str]) -> set[str]:
    """A forced stage and everything downstream of it."""
    forced = set()
    for stage in stages:
        if stage not in STAGES:
            raise KnowUndoError(f"unknown stage {stage!r} for --force; choose from {', '.join(STAGES)}")
        forced |= set(STAGES[STAGES.index(stage) :])
    return forced


def check_rows(cfg: Config) -> list[RunLabel]:
    """The run's row labels, each runnable with valid settings (one-line errors before any work)."""
    labels = [RunLabel.parse(label) for label in cfg.run.methods]
    if len({label.label for label in labels}) != len(labels):
        raise KnowUndoError(f"run.methods lists a method twice: {', '.join(cfg.run.methods)}")
    for label in labels:
        check_label(label)
        method_params(cfg.unlearn.method_args, label.method, label.label)
        cfg.unlearn.for_method(label.method, label.label)
    for key in cfg.unlearn.per_method:
        check_label(RunLabel.parse(key))
    return labels


def needs_region(label: RunLabel) -> bool:
    return label.region is not None or check_label(label).localized


class StageLog:
    """One line per stage with its wall time (``cached`` when its output was already there), and the time per
    stage kind and in total at the end."""

    def __init__(self, echo: Callable[[str], None]):
        self.echo, self.seconds = echo, {}

    def run(self, kind: str, where: str, work: Callable[..., tuple[str, bool]], *args) -> None:
        """``work`` returns ``(summary, cached)``."""
        started = time.perf_counter()
        summary, cached = work(*args)
        elapsed = time.perf_counter() - started
        self.seconds[kind] = self.seconds.get(kind, 0.0) + elapsed
        self.echo(f"[{where}] {kind:9} {'cached' if cached else f'{elapsed:6.1f}s'}  {summary}")

    def merge(self, result: tuple[list[str], dict[str, float]]) -> None:
        """Another log's lines and times (a row run elsewhere: :func:`_row_job`)."""
        lines, seconds = result
        for line in lines:
            self.echo(line)
        for kind, value in seconds.items():
            self.seconds[kind] = self.seconds.get(kind, 0.0) + value

    def totals(self) -> str:
        parts = [f"{kind} {seconds:.0f}s" for kind, seconds in self.seconds.items()]
        return f"time per stage: {', '.join(parts)}; total {sum(self.seconds.values()):.0f}s"


def check_run_dir(out: Path, cfg: Config) -> None:
    """Refuse a directory that holds a run (or sweep) of other settings, or anything else."""
    record = out / RUN_RECORD
    if record.is_file():
        try:
            previous = read_json(record).get("settings_key")
        except ValueError:
            raise KnowUndoError(f"{record}: not a readable run record; choose another output directory") from None
        if previous != settings_key(cfg):
            raise KnowUndoError(
                f"{out} holds a run of other settings (key {previous}, now {settings_key(cfg)}); "
                f"choose another --out or remove it"
            )
    elif out.is_dir() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        raise KnowUndoError(f"{out} exists and is not a knowundo run directory; choose another --out")


def _remove(path: Path) -> None:
    for target in (path, path.with_name(path.name + ".partial")):
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def _fit(record: dict) -> str:
    accuracy = record.get("train_accuracy")
    reached = f", train accuracy {100 * accuracy:.1f}%" if accuracy is not None else ""
    return f"train loss {record['train_loss']:.4f}{reached} after {record.get('epochs_run', 0):g} epochs"


def _print_now(line: str) -> None:
    print(line, flush=True)


def _silent(line: str) -> None:
    pass


class DomainRun:
    """The stages of one domain and one training seed, each a ``() -> (summary, cached)`` for :class:`StageLog`.
    ``cfg`` trains (its ``seed``: this pass's); ``evaluation``: the config every model is evaluated with (the
    run's, whatever the training seed: the same instrument for every seed); ``tuned``: the layout whose fine-tune
    and oracle this pass's rows start from and compare with (its own by default). Its stage lines name the
    directory it writes, relative to the run's (``privacy``, ``privacy/seeds/1``)."""

    def __init__(
        self,
        cfg: Config,
        domain: str,
        layout: RunLayout,
        progress: bool,
        evaluation: Config | None = None,
        tuned: RunLayout | None = None,
    ):
        self.cfg, self.domain, self.layout, self.progress = cfg, domain, layout, progress
        self.evaluation, self.tuned = evaluation or cfg, tuned or layout
        # the vanilla model's adapter: the fine-tune's, or none for a model that already knows its data
        self.vanilla = self.tuned.adapter if cfg.run.finetune else None
        self.compared = self.tuned  # the layout of the vanilla and oracle results the rows are compared with

    def quiet(self) -> DomainRun:
        """This pass without progress bars (for a row run elsewhere, whose output nobody watches)."""
        return DomainRun(self.cfg, self.domain, self.layout, False, self.evaluation, self.tuned)

    def remove_forced(self, forced: set[str], labels: list[RunLabel]) -> None:
        layout = self.layout
        for stage, path in (
            ("finetune", layout.finetune),
            ("finetune", layout.oracle),
            ("localize", layout.localize),
            ("eval", layout.eval_dir),
            *(("unlearn", layout.unlearn(label.name)) for label in labels),
            *(("attack", relearned_adapter(adapter).parent) for label in labels for adapter in self._reportable(label)),
        ):
            if stage in forced:
                _remove(path)

    def finetune(self) -> tuple[str, bool]:
        done = (self.layout.finetune / FINETUNE_RECORD).is_file()
        record = finetune(self.cfg, self.domain, self.layout.finetune, progress=self.progress)
        return f"{record['items']} items, {_fit(record)}", done

    def oracle(self) -> tuple[str, bool]:
        done = (self.layout.oracle / FINETUNE_RECORD).is_file()
        record = finetune(self.cfg, self.domain, self.layout.oracle, progress=self.progress, oracle=True)
        return f"oracle: {record['items']} retention items, {_fit(record)}", done

    def _reportable(self, label: RunLabel) -> list[Path]:
        """Every adapter of a row that may be reported, hence attacked: its end and its checkpoints."""
        run_dir = self.layout.unlearn(label.name)
        return [run_dir / ADAPTER_DIR, *(path for _, path in checkpoint_steps(run_dir / CHECKPOINTS_DIR))]

    def selection_rule(self, label: RunLabel) -> str:
        """How the row's reported checkpoint is chosen (``unlearn.select``, its own entry first)."""
        return self.cfg.unlearn.for_method(label.method, label.label).select

    def reported_adapter(self, label: RunLabel) -> Path:
        """The adapter the row reports: the run's end, or the checkpoint ``unlearn.select`` chose."""
        if self.selection_rule(label) == "last":
            return self.layout.unlearned_adapter(label.name)
        return reported_adapter(self.layout.unlearn(label.name))

    @functools.cached_property
    def references_on_selection(self) -> dict[str, dict]:
        """The vanilla model's and the oracle's selection scores (what a choice compares with): scored once per pass
        (and cached on disk), whatever the number of rows that choose."""
        models = {VANILLA_LABEL: (self.vanilla, "")}
        if self.cfg.run.oracle_model:
            models[ORACLE_LABEL] = (None, self.cfg.run.oracle_model)
        elif self.cfg.run.oracle:
            models[ORACLE_LABEL] = (self.tuned.oracle_adapter, "")
        return {
            label: selection_scores(self.cfg, self.domain, adapter, self.compared.selection_scores(label), name)
            for label, (adapter, name) in models.items()
        }

    def select(self, label: RunLabel) -> tuple[str, bool]:
        settings = self.cfg.unlearn.for_method(label.method, label.label)
        record, cached = choose_checkpoint(
            self.cfg,
            self.domain,
            self.layout.unlearn(label.name),
            self.references_on_selection,
            settings.select,
            settings.select_tolerance,
        )
        return f"{label.name}: step {record['step']} of {record['steps']} ({record['reason']})", cached

    def relearn(self, label: RunLabel) -> tuple[str, bool]:
        adapter = self.reported_adapter(label)
        done = (relearned_adapter(adapter).parent / RELEARN_RECORD).is_file()
        record = relearn(self.cfg, self.domain, adapter, progress=self.progress)
        return (
            f"{label.name}: relearned {record['steps']} steps on {record['items']} unlearn train items, "
            f"loss {record['train_loss']:.4f}"
        ), done

    def references(self, label: str) -> dict[str, Path]:
        """The results an evaluation compares against: the oracle's (for all but itself), the vanilla
        model's (for the unlearned rows)."""
        chosen = {}
        if self.cfg.run.oracle and label != ORACLE_LABEL:
            chosen[ORACLE_LABEL] = self.compared.eval(ORACLE_LABEL)
        if label not in (ORACLE_LABEL, VANILLA_LABEL, BASE_LABEL):
            chosen[VANILLA_LABEL] = self.compared.eval(VANILLA_LABEL)
        return chosen

    def start(self, label: RunLabel | None = None) -> Path | None:
        """The adapter a row's unlearning starts from, and its reference model: the vanilla model's."""
        return self.vanilla

    def localization(self, label: RunLabel | None = None) -> Path:
        """Where the region a row trains in is localized: one for every row of the pass."""
        return self.layout.localize

    def relocalizes(self, label: RunLabel) -> bool:
        """Whether the row localizes a region of its own in this pass (besides the pass's shared one)."""
        return False

    def localize(self, label: RunLabel | None = None) -> tuple[str, bool]:
        """The pass's region (``label`` None), or a row's own, localized on the model the row starts from."""
        out_dir = self.localization(label)
        done = (out_dir / GRADIENTS_RECORD).is_file()
        region = localize(self.cfg, self.domain, self.start(label), out_dir, progress=self.progress)
        return (
            f"{label.name + ': ' if label else ''}{region['selected_units']} of {region['total_units']} units in "
            f"{region['selected_parameters']} LoRA matrices ({region['granularity']})"
        ), done

    def unlearn(self, label: RunLabel, run_dir: Path | None = None) -> tuple[str, bool]:
        """The row's unlearning run, in its place in the layout or in ``run_dir`` (a sweep's point)."""
        run_dir = run_dir or self.layout.unlearn(label.name)
        done = (run_dir / UNLEARN_RECORD).is_file()
        record = unlearn(
            self.cfg,
            self.domain,
            label.method,
            self.start(label),
            run_dir,
            retain=label.retain,
            region=self.localization(label) / REGION_FILE if needs_region(label) else None,
            progress=self.progress,
        )
        early = record["stopped_early"]
        stopped = f", stopped early at step {early['step']}" if early else ""
        return f"{label.name}: {record['steps']} steps, {record['seconds_per_step']:.2f}s/step{stopped}", done

    def evaluate(self, label: str, adapter: Path | None, oracle_model: str | None = None) -> tuple[str, bool]:
        """On the main process only (the others wait): evaluation is cheap next to training. ``oracle_model``: the
        oracle given as a model (``run.oracle_model``), evaluated as the oracle row."""
        target, references = self.layout.eval(label), self.references(label)
        key = eval_key(self.evaluation, self.domain, adapter, label, references, oracle_model)
        cached = target.is_file() and read_json(target).get("meta", {}).get("key") == key
        if is_main() and not cached:
            evaluate_checkpoint(
                self.evaluation,
                self.domain,
                adapter,
                target,
                label=label,
                progress=self.progress,
                references=references,
                oracle_model=oracle_model,
            )
        barrier()
        variant, result = self.cfg.eval.prompts[0], read_json(target)
        first = result["prompts"][variant]
        return (
            f"{label}: Unlearn {first['unlearn_success']:.1f}  Retention {first['retention_success']:.1f}  "
            f"Avg {first['avg_success']:.1f} (prompt {variant})"
        ), cached


def at_request(cfg: Config, index: int) -> Config:
    """``cfg`` as the stages of request ``index`` of ``run.requests`` read it (``data.request``)."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, request=index))


class RequestRun(DomainRun):
    """Request ``index`` of ``run.requests`` in one domain (its stages read ``data.request``): every row continues
    from its own model after the previous request (the vanilla model at the first), which is also its reference
    model; the rows are evaluated against the vanilla model and the oracle evaluated on the same request's view.
    A row trained in a region localizes again on its own model (from the second request) or, as ``<label>+reused``,
    keeps the first request's region, localized on the vanilla model (so the two differ from the second request
    on). Layout: ``OUT/<domain>/requests/<index>``."""

    def __init__(self, home: DomainRun, index: int, previous: RequestRun | None = None):
        super().__init__(
            at_request(home.cfg, index),
            home.domain,
            home.layout.request(index),
            home.progress,
            at_request(home.evaluation, index),
            home.tuned,
        )
        self.home, self.index, self.previous = home, index, previous
        self.compared = self.layout

    def quiet(self) -> RequestRun:
        return RequestRun(self.home.quiet(), self.index, self.previous.quiet() if self.previous else None)

    def start(self, label: RequestRow | None = None) -> Path | None:
        if label is None or self.previous is None:
            return self.vanilla
        return self.previous.reported_adapter(self.previous.kept(label))

    def kept(self, label: RequestRow) -> RequestRow:
        """The row whose stages stand for ``label`` in this request: at the first, a row keeping the first request's
        region is its re-localized twin (the same region, start and settings), trained and evaluated once."""
        return dataclasses.replace(label, reused=False) if self.previous is None else label

    def localization(self, label: RequestRow | None = None) -> Path:
        if self.relocalizes(label):
            return self.layout.localized(label.name)
        return self.home.layout.request(1).localized(VANILLA_LABEL)

    def relocalizes(self, label: RequestRow | None) -> bool:
        return label is not None and self.previous is not None and not label.reused and needs_region(label)


def request_rows(labels: list[RunLabel], regions: list[str]) -> list[RequestRow]:
    """The rows of ``run.requests``: each row once, a row trained in a region once per ``run.request_regions``."""
    rows = []
    for label in labels:
        modes = regions if needs_region(label) else ["relocalize"]
        rows += [RequestRow(label.method, label.retain, label.region, reused=mode == "reuse") for mode in modes]
    return rows


def run_record(cfg: Config, domains: list[str], rows: list[str], command: str | None) -> dict:
    """``run.json``: what a results page says about how the run was made, and the settings key that guards the
    directory."""
    source = DataSource.from_config(cfg.data)
    return {
        "settings_key": settings_key(cfg),
        "command": command,
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "code": code_revision(),
        "machine": machine(),
        "seed": cfg.seed,
        "domains": domains,
        "methods": rows,
        "processes": world_size(),
        "data_hashes": {d: hash_json(load_domain(source, d)) for d in domains},
        "config": cfg.to_dict(),
        "versions": library_versions(),
    }


def kept_in(out: Path, record: dict, echo: Callable[[str], None]) -> Callable[[str], None]:
    """``echo`` that also appends each line to the run's stage log (read by results pages), which first gets the
    invocation's command line."""
    log = out / STAGES_LOG
    with log.open("a") as handle:
        handle.write(f"$ {record['command'] or 'run_benchmark(...)'}  # {record['started']}\n")

    def both(line: str) -> None:
        with log.open("a") as handle:
            handle.write(line + "\n")
        echo(line)

    return both


def run_benchmark(
    cfg: Config,
    out: str | Path,
    force: list[str] = (),
    progress: bool = True,
    echo: Callable[[str], None] = _print_now,
    command: str | None = None,
) -> Path:
    """Run (or resume) the benchmark under ``out``; returns the report directory. ``command``: how it was invoked,
    kept in ``run.json`` and the stage log (``stages.log``) for the results page."""
    out = Path(out)
    cfg = seeded(cfg, run_seeds(cfg)[0])  # the first of run.seeds is the run's seed
    load_plugins(cfg.plugins)
    source = DataSource.from_config(cfg.data)
    domains = [check_domain(d, source) for d in cfg.run.domains]
    if not domains:
        raise KnowUndoError("run.domains is empty")
    labels = check_rows(cfg)
    if cfg.data.request:
        raise KnowUndoError("data.request is set by `knowundo run` for each of run.requests; leave it at 0")
    if cfg.run.executor == "ray" and world_size() > 1:
        raise KnowUndoError("run.executor=ray runs rows as Ray tasks from one process; launch it without accelerate")
    forced = expand_force(list(force))
    for domain in domains:
        cfg.eval.check_prompts(domain)
        if any(needs_region(label) for label in labels):
            selection_for(cfg, domain)
    problems = preflight(cfg).problems if is_main() else []  # `knowundo check`'s checks, before anything is written
    if on_any_process(bool(problems)):  # every process stops, none waits at the next barrier
        raise KnowUndoError(
            f"the preflight check found {len(problems)} problem(s): {'; '.join(problems)}"
            if problems
            else "the preflight check found problems (see the main process)"
        )
    check_run_dir(out, cfg)
    if is_main():
        remove_stale_temporaries(out)
        record = run_record(cfg, domains, [label.label for label in labels], command)
        write_json(out / RUN_RECORD, record)
        echo = kept_in(out, record, echo)
    else:
        echo = _silent  # one process reports
    barrier()

    with _library_objects_frozen():
        _run_stages(cfg, out, domains, labels, forced, progress, echo)
    return report_dir(out)


def _run_stages(
    cfg: Config,
    out: Path,
    domains: list[str],
    labels: list[RunLabel],
    forced: set[str],
    progress: bool,
    echo: Callable[[str], None],
) -> None:
    log = StageLog(echo)
    if cfg.model.name in BUILT_IN_MODELS:
        log.run("model", "all", prepare_built_in, cfg, progress)
    rows: list = []  # with run.executor=ray: (job, args) of every row
    for domain in domains:
        home = RunLayout(out / domain)
        # the first seed is the run's (run_benchmark made it cfg.seed): its stages are a one-seed run's
        passes = [DomainRun(cfg, domain, home, progress)] + [
            DomainRun(
                seeded(cfg, seed),
                domain,
                home.seed(seed),
                progress,
                evaluation=cfg,
                tuned=None if cfg.run.seed_finetune else home,
            )
            for seed in run_seeds(cfg)[1:]
        ]
        requests = request_runs(passes[0])  # run.requests: the run's own seed only
        sequences = request_rows(labels, cfg.run.request_regions)
        if is_main():
            for stages in passes:
                stages.remove_forced(forced, labels)
            for stages in requests:
                stages.remove_forced(forced, sequences)
        barrier()
        for stages in passes:
            where = str(stages.layout.root.relative_to(out))
            if stages.tuned == stages.layout:  # a fine-tune of its own (the run's own seed, or run.seed_finetune)
                _tuned_stages(cfg, stages, log, echo, base=stages is passes[0], where=where)
            if any(needs_region(label) for label in labels):
                log.run("localize", where, stages.localize)
            chains = [[(stages, where, label)] for label in labels]
            if stages is passes[0] and requests:  # then each row's requests, one after another
                chains += _request_chains(cfg, requests, sequences, out, log)
            if cfg.run.executor == "serial":  # each row at once, its lines as they come
                for chain in chains:
                    chain_stages(chain, log)
            else:  # the rows of every domain and seed as jobs, once everything they start from is there
                rows += [(_row_job, ([(run.quiet(), at, label) for run, at, label in chain],)) for chain in chains]

    if rows:
        started = time.perf_counter()
        run_jobs(cfg, rows, log.merge)
        echo(f"[all] {len(rows)} rows as Ray tasks: {time.perf_counter() - started:.1f}s wall")

    def do_report() -> tuple[str, bool]:
        report = build_report(out) if is_main() else report_dir(out)
        barrier()
        return f"tables and plots -> {report}", False

    log.run("report", "all", do_report)
    if is_main():
        findings = read_json(report_dir(out) / "findings.json")["findings"]
        for domain in domains:
            echo(f"[{domain}] paper findings: {findings_summary(findings, domain)} (report/findings.md)")
    echo(log.totals())


def _request_chains(
    cfg: Config, requests: list[RequestRun], rows: list[RequestRow], out: Path, log: StageLog
) -> list[list[tuple[DomainRun, str, RunLabel]]]:
    """What every request's rows start from (the references evaluated in each request's view, the first request's
    region), then each row's stages request after request (a row and its ``+reused`` twin in one chain: they share
    the first request)."""
    wheres = [str(request.layout.root.relative_to(out)) for request in requests]
    for request, where in zip(requests, wheres):
        _evaluate_references(cfg, request, log, where)
    if any(needs_region(row) for row in rows):
        log.run("localize", wheres[0], requests[0].localize)
    chains: dict[RequestRow, list[tuple[DomainRun, str, RunLabel]]] = {}  # a row and its reused twin: one chain
    for row in rows:
        chain = chains.setdefault(dataclasses.replace(row, reused=False), [])
        steps = [(request, where, request.kept(row)) for request, where in zip(requests, wheres)]
        chain += [step for step in steps if step not in chain]
    return list(chains.values())


def request_runs(home: DomainRun) -> list[RequestRun]:
    """The passes of ``run.requests`` (none for a single request), each continuing from the one before."""
    requests: list[RequestRun] = []
    if home.cfg.run.requests > 1:
        for index in range(1, home.cfg.run.requests + 1):
            requests.append(RequestRun(home, index, requests[-1] if requests else None))
    return requests


def row_stages(stages: DomainRun, label: RunLabel, where: str, log: StageLog) -> None:
    """One row of one pass: its own region (a later request's), unlearning, the checkpoint it reports
    (``unlearn.select``), the relearning attack and its evaluation."""
    if stages.relocalizes(label):
        log.run("localize", where, stages.localize, label)
    log.run("unlearn", where, stages.unlearn, label)
    if stages.selection_rule(label) != "last":
        log.run("select", where, stages.select, label)
    if stages.cfg.attack.relearn:
        log.run("attack", where, stages.relearn, label)
    log.run("eval", where, stages.evaluate, label.name, stages.reported_adapter(label))


def chain_stages(chain: list[tuple[DomainRun, str, RunLabel]], log: StageLog) -> None:
    """A row's stages in each of its passes in turn: one pass, or each of ``run.requests`` after the one before."""
    for stages, where, label in chain:
        row_stages(stages, label, where, log)


def _row_job(chain: list[tuple[DomainRun, str, RunLabel]]) -> tuple[list[str], dict[str, float]]:
    """:func:`chain_stages` as a job run elsewhere (a Ray task): its stage lines and times come back."""
    load_plugins(chain[0][0].cfg.plugins)
    lines: list[str] = []
    log = StageLog(lines.append)
    with _library_objects_frozen():
        chain_stages(chain, log)
    return lines, log.seconds


def _tuned_stages(
    cfg: Config, stages: DomainRun, log: StageLog, echo: Callable[[str], None], base: bool, where: str | None = None
) -> None:
    """The fine-tune, the oracle and their evaluations (and the base model's, once per domain) of one pass."""
    where = where or stages.domain
    if cfg.run.finetune:
        log.run("finetune", where, stages.finetune)
        if missed := target_missed(read_json(stages.layout.finetune / FINETUNE_RECORD)):
            echo(f"[{where}] warning: {missed}")
    if cfg.run.oracle and not cfg.run.oracle_model:
        log.run("finetune", where, stages.oracle)
    _evaluate_references(cfg, stages, log, where)
    if base and cfg.run.base and cfg.run.finetune:
        log.run("eval", where, stages.evaluate, BASE_LABEL, None)
    if warning := knowledge_warning(read_json(stages.layout.eval(VANILLA_LABEL))):
        echo(f"[{where}] warning: {warning}")


def _evaluate_references(cfg: Config, stages: DomainRun, log: StageLog, where: str) -> None:
    """The oracle's and the vanilla model's evaluations in a pass's view, which its rows are compared with."""
    if cfg.run.oracle_model:
        log.run("eval", where, stages.evaluate, ORACLE_LABEL, None, cfg.run.oracle_model)
    elif cfg.run.oracle:
        log.run("eval", where, stages.evaluate, ORACLE_LABEL, stages.tuned.oracle_adapter)
    log.run("eval", where, stages.evaluate, VANILLA_LABEL, stages.vanilla)


@contextlib.contextmanager
def _library_objects_frozen():
    """The half a million objects the libraries create on import, out of the cyclic garbage collector's view
    (``gc.freeze``) while the stages run: they live as long as the process, yet every full collection scanned
    them again — Trainer runs one at the start of each training (accelerate's ``free_memory``), and a run holds
    dozens of trainings. Garbage made meanwhile is collected as before; afterwards
    everything is collectable again."""
    from lm_eval.evaluator import evaluate  # noqa: F401 (the stages import these anyway)
    from lm_eval.models.huggingface import HFLM  # noqa: F401
    from peft import PeftModel  # noqa: F401
    from transformers import Trainer  # noqa: F401

    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def prepare_built_in(cfg: Config, progress: bool) -> tuple[str, bool]:
    """The explicit model step of a built-in model: the tiny base built, SmolLM2 converted, once (cached for later
    runs)."""
    cached = is_prepared(cfg)
    if is_main():
        prepare_base(cfg, progress=progress)
    barrier()
    return f"{cfg.model.name} base -> {resolve_model_path(cfg)}", cached
