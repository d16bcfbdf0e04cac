"""``knowundo`` command line: parse, call the stages, turn user errors into one line and exit code 2."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections import Counter
from pathlib import Path

from knowundo.errors import Interrupted, KnowUndoError
from knowundo.known_warnings import silence_known


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit code 2 like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        help="settings preset: tiny (the default without a model), smollm2 (the real "
        "small chat model, offline), chat (the default for any model named with "
        "--model or model.name), llama2-7b-chat, qwen1.5-7b-chat",
    )
    parser.add_argument("--config", help="YAML file of settings, applied over the preset")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one setting, e.g. --set finetune.epochs=3 (repeatable)",
    )


def resolve_preset(args, extra: list[str] = ()) -> str:
    """The preset named, or the default for the model named (``--model`` / ``model.name``); one warning line when
    a model-specific preset meets a model of another family."""
    from knowundo.config import NEUTRAL_PRESET, PRESET_FAMILIES, default_preset

    named = [item.split("=", 1)[1] for item in [*args.overrides, *extra] if item.startswith("model.name=")]
    model = named[-1] if named else None
    if args.preset is None:
        return default_preset(model)
    if args.preset == NEUTRAL_PRESET and model is None:
        raise KnowUndoError(
            f"preset {NEUTRAL_PRESET} is for a model you name: add --model ID_OR_DIR (or --set model.name=...)"
        )
    family = PRESET_FAMILIES.get(args.preset)
    if family and model and model != args.preset:
        other = _model_family(model)
        if other is not None and other != family:
            print(
                f"knowundo: warning: preset {args.preset} is written for {family} models and {model} is a {other} "
                f"model; --preset {NEUTRAL_PRESET} is the neutral preset for any model",
                file=sys.stderr,
            )
    return args.preset


def _model_family(model: str) -> str | None:
    """``model_type`` of a local or cached model's config (None where it cannot be read: the stages say why)."""
    from knowundo.models.load import load_model_config

    try:
        return load_model_config(model).model_type
    except KnowUndoError:
        return None


def _settings(args, extra: list[str] = (), check: bool = True):
    """(the preset's name, the resolved settings), with their plugins imported (they may register methods and
    metrics)."""
    from knowundo.config import load_config
    from knowundo.plugins import load_plugins

    preset = resolve_preset(args, extra)
    cfg = load_config(preset, args.config, [*args.overrides, *extra], check=check)
    load_plugins(cfg.plugins)
    return preset, cfg


def _config(args, extra: list[str] = (), check: bool = True):
    return _settings(args, extra, check)[1]


def _prepare_model(cfg, check) -> None:
    """For a command that loads the model: ``check()`` its inputs (one-line errors before any work), then the
    explicit step that builds the tiny base if it is not cached yet."""
    from knowundo.models.load import prepare_base

    check()
    prepare_base(cfg, progress=True)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="knowundo",
        description="KnowUnDo: fine-tune, localize, unlearn and evaluate "
        "knowledge unlearning in LLMs (bad input: exit code 2).",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    data = sub.add_parser("data", help="load and validate KnowUnDo data; print its shape; export the bundled set")
    _add_config_options(data)
    data.add_argument("--export", metavar="DIR", help="write the bundled set in the Hub's layout to DIR")

    finetune = sub.add_parser("finetune", help="LoRA fine-tune a model on one domain so that it knows the data")
    _add_config_options(finetune)
    finetune.add_argument("--domain", required=True)
    finetune.add_argument("--out", required=True, metavar="DIR", help="where the adapter and record go")
    finetune.add_argument(
        "--oracle",
        action="store_true",
        help="train on the Retention Scope only: the oracle that never saw the Unlearn Scope",
    )

    localize = sub.add_parser(
        "localize",
        help="MemFlex: find the LoRA region where unlearning and retention gradients diverge (train splits only)",
    )
    _add_config_options(localize)
    localize.add_argument("--domain", required=True)
    localize.add_argument("--finetuned", required=True, metavar="DIR", help="output of `knowundo finetune`")
    localize.add_argument("--out", required=True, metavar="DIR", help="gradients, region.json, heatmap.png")
    localize.add_argument("--granularity", choices=("module", "row"), help="override localize.granularity")
    localize.add_argument("--mu", type=float, help="cosine threshold (selection: thresholds)")
    localize.add_argument("--sigma", type=float, help="mean |gradient| threshold (selection: thresholds)")
    localize.add_argument("--quantile", type=float, help="select by quantile of this model's own statistics")
    localize.add_argument("--top-k", type=int, help="select the k lowest-cosine units of high magnitude")

    unlearn = sub.add_parser("unlearn", help="unlearn the Unlearn Scope of one domain with one method")
    _add_config_options(unlearn)
    unlearn.add_argument("--domain", required=True)
    unlearn.add_argument(
        "--method", required=True, help="a registered method (`knowundo methods` lists them with their parameters)"
    )
    unlearn.add_argument(
        "--general",
        action="store_true",
        help="retain on the general-knowledge set (out-of-distribution) instead of the retention train split",
    )
    unlearn.add_argument("--finetuned", required=True, metavar="DIR", help="output of `knowundo finetune`")
    unlearn.add_argument("--out", required=True, metavar="DIR")
    unlearn.add_argument(
        "--region",
        metavar="FILE",
        help="region.json from `knowundo localize`: train only inside it (any method; required by memflex)",
    )

    evaluate = sub.add_parser(
        "eval",
        help="evaluate a base model, fine-tuned or unlearned adapter on one domain: "
        "success, PPL, ROUGE-L, leak rate per prompt variant; general "
        "capability; MIA; checkpoint curves",
    )
    _add_config_options(evaluate)
    evaluate.add_argument("--domain", required=True)
    evaluated = evaluate.add_mutually_exclusive_group()
    evaluated.add_argument(
        "--adapter",
        metavar="DIR",
        help="a fine-tuned or unlearned adapter, or a full-parameter checkpoint (default: base model)",
    )
    evaluated.add_argument(
        "--oracle-model",
        metavar="MODEL",
        help="evaluate this model (Hub id or directory, trained elsewhere on the Retention Scope alone) as the "
        "domain's oracle; its result file is then the --oracle of the other models",
    )
    evaluate.add_argument("--label", help="row name in reports (default: from the stage record beside the adapter)")
    evaluate.add_argument("--out", metavar="FILE", help="write metrics and per-item scores as JSON")
    evaluate.add_argument(
        "--oracle",
        metavar="FILE",
        help="the oracle's result file (`knowundo eval` of a `finetune --oracle` adapter): forget quality, privleak",
    )
    evaluate.add_argument(
        "--vanilla",
        metavar="FILE",
        help="the fine-tuned model's result file: the share of forgetting the relearning attack undoes",
    )

    relearn = sub.add_parser(
        "relearn",
        help="the relearning attack on an unlearned adapter: a few fine-tuning "
        "steps on part of the unlearn train split (attack.relearn_steps, "
        "attack.relearn_fraction); `knowundo eval` of the adapter then "
        "reports Unlearn Success after it",
    )
    _add_config_options(relearn)
    relearn.add_argument("--domain", required=True)
    relearn.add_argument("--adapter", required=True, metavar="DIR", help="an unlearned adapter")

    run = sub.add_parser(
        "run",
        help="the whole benchmark, resumable: fine-tune, localize, every method, evaluate, "
        "report (no arguments: tiny model, bundled data, both domains, all methods)",
    )
    _add_config_options(run)
    run.add_argument("--domains", help="comma-separated (default: run.domains = privacy,copyright)")
    run.add_argument(
        "--methods",
        help="comma-separated row labels <method>[_ood][@memflex]: _ood retains on the "
        "general set, @memflex trains inside the MemFlex region (default: run.methods)",
    )
    chosen = run.add_mutually_exclusive_group()
    chosen.add_argument("--model", help="Hugging Face id or local directory of a causal LM (sets model.name)")
    chosen.add_argument(
        "--vanilla",
        metavar="MODEL",
        help="a model (Hub id or directory, e.g. a full fine-tune) that already knows the data: it is the vanilla "
        "row, nothing is fine-tuned and there is no oracle unless --oracle-model gives one (sets model.name, "
        "run.finetune=false, run.oracle=false)",
    )
    run.add_argument(
        "--oracle-model",
        metavar="MODEL",
        help="the oracle as a model trained elsewhere on the Retention Scope alone (Hub id or directory), evaluated "
        "as given instead of fine-tuning one (sets run.oracle=true, run.oracle_model)",
    )
    run.add_argument("--out", default="runs/default", metavar="DIR", help="results directory (default: %(default)s)")
    run.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="STAGE",
        help="redo STAGE and everything after it: finetune, localize, unlearn, attack, eval, report",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")

    sweep = sub.add_parser(
        "sweep",
        help="a fair hyperparameter sweep: every row of sweep.rows trained at the same number of grid points, "
        "scored on the selection split (data.selection), one point per row chosen by sweep.rule; writes a "
        "Pareto plot and the chosen settings as a config file",
    )
    _add_config_options(sweep)
    sweep.add_argument("--domains", help="comma-separated (default: run.domains)")
    sweep.add_argument("--rows", help="comma-separated row labels to sweep (default: sweep.rows)")
    sweep.add_argument("--out", default="runs/sweep", metavar="DIR", help="results directory (default: %(default)s)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bars")

    check = sub.add_parser(
        "check",
        help="preflight, in seconds and without training: settings, model config and "
        "tokenizer (no weights), parameters and LoRA parameters, estimated peak "
        "memory per method, template and answer mask, data, lm-eval tasks "
        "offline (exit 2 with one line per problem)",
    )
    _add_config_options(check)
    check.add_argument("--model", help="Hugging Face id or local directory of a causal LM (sets model.name)")

    methods = sub.add_parser(
        "methods",
        help="list the registered unlearning methods, what they need and their "
        "parameters (set with --set unlearn.method_args.<method>.<param>=...)",
    )
    _add_config_options(methods)

    report = sub.add_parser(
        "report",
        help="rebuild the comparison tables (Markdown, CSV, JSON) and plots from "
        "the evaluation results under DIR, without recomputing",
    )
    report.add_argument("results", metavar="DIR")
    report.add_argument("--out", metavar="DIR", help="where the report goes (default: DIR/report)")
    report.add_argument(
        "--page",
        metavar="FILE.md",
        help="also write one results page of the run: its command, code, date and machine, stage times, tables, "
        "findings, samples and plots (plots in a folder beside the page)",
    )
    return parser


def cmd_data(args) -> None:
    from knowundo.artifacts import hash_json
    from knowundo.data.knowundo import DataSource, export_hub_layout, load_domain, load_general

    cfg = _config(args)
    if args.export:
        if cfg.data.source != "bundled":
            raise KnowUndoError("--export writes the bundled set; drop data.source or set it to bundled")
        print(f"wrote {export_hub_layout(cfg.data.seed, args.export)}")
        return
    source = DataSource.from_config(cfg.data)
    for domain in cfg.run.domains:
        data = load_domain(source, domain)
        for scope, splits in data.items():
            for split, items in splits.items():
                categories = Counter(item.get("category", "-") for item in items)
                instances = len({item.get("instance") for item in items})
                print(
                    f"{domain:9} {scope:9} {split:5} {len(items):5} items  {instances:3} instances  "
                    + ", ".join(f"{c}: {n}" for c, n in sorted(categories.items()))
                )
        print(f"{domain:9} data hash {hash_json(data)}")
    general = load_general(source)
    print("general   " + ", ".join(f"{part}: {len(items)} items" for part, items in general.items()))


def cmd_finetune(args) -> None:
    from knowundo.finetune import finetune
    from knowundo.stage import Stage

    cfg = _config(args)
    _prepare_model(cfg, lambda: Stage("finetune", cfg, args.domain).data)
    record = finetune(cfg, args.domain, args.out, oracle=args.oracle)
    what = f"the oracle of {args.domain}" if args.oracle else args.domain
    print(
        f"fine-tuned {what}: {record['items']} items, train loss {record['train_loss']:.4f}, "
        f"{record['trainable_parameters']} trainable parameters, {record['wall_seconds']:.0f}s -> {args.out}"
    )


def _localize_overrides(args) -> list[str]:
    """The CLI's selection flags as config overrides (the last one given decides the selection kind)."""
    sets = [f"localize.granularity={args.granularity}"] if args.granularity else []
    chosen = [flag for flag in ("mu", "sigma", "quantile", "top_k") if getattr(args, flag) is not None]
    if ({"mu", "sigma"} & set(chosen) and {"quantile", "top_k"} & set(chosen)) or {"quantile", "top_k"} <= set(chosen):
        raise KnowUndoError("choose one selection: --mu/--sigma (thresholds), --quantile, or --top-k")
    for flag in chosen:
        sets.append(f"localize.{flag}={getattr(args, flag)}")
    if chosen:
        sets.append("localize.selection=" + ("thresholds" if chosen[0] in ("mu", "sigma") else chosen[0]))
    return sets


def cmd_localize(args) -> None:
    from knowundo.layout import ADAPTER_DIR, REGION_FILE
    from knowundo.localize import check_localize, localize

    cfg = _config(args, _localize_overrides(args))
    adapter = Path(args.finetuned) / ADAPTER_DIR
    _prepare_model(cfg, lambda: check_localize(cfg, args.domain, adapter))
    region = localize(cfg, args.domain, adapter, args.out)
    sel = region["selection"]
    print(
        f"localized {args.domain} ({region['granularity']}, {sel['kind']}: mu {sel['mu']:.4g}, sigma "
        f"{sel['sigma']:.3g}): {region['selected_units']} of {region['total_units']} units in "
        f"{region['selected_parameters']} LoRA matrices -> {Path(args.out) / REGION_FILE}"
    )


def cmd_unlearn(args) -> None:
    from knowundo.layout import ADAPTER_DIR
    from knowundo.unlearn import plan_unlearn, unlearn

    cfg = _config(args)
    run = (
        cfg,
        args.domain,
        args.method,
        Path(args.finetuned) / ADAPTER_DIR,
        args.out,
        "general" if args.general else "retention",
        args.region,
    )
    _prepare_model(cfg, lambda: plan_unlearn(*run))
    record = unlearn(*run)
    stopped = f", stopped early at step {record['stopped_early']['step']}" if record["stopped_early"] else ""
    retain = f" + {record['retain']} retain data" if record["retain"] else ""
    print(
        f"unlearned {args.domain} with {record['label']}{retain}: {record['steps']} steps, "
        f"{record['seconds_per_step']:.2f}s/step{stopped} -> {args.out}"
    )


def cmd_eval(args) -> None:
    from knowundo.evaluate.metric import Columns
    from knowundo.evaluate.run import eval_key, evaluate_checkpoint
    from knowundo.report import table_markdown, table_rows

    cfg = _config(args)
    references = {name: path for name, path in (("oracle", args.oracle), ("vanilla", args.vanilla)) if path}
    _prepare_model(cfg, lambda: eval_key(cfg, args.domain, args.adapter, args.label, references, args.oracle_model))
    result = evaluate_checkpoint(
        cfg,
        args.domain,
        args.adapter,
        args.out,
        label=args.label,
        references=references,
        oracle_model=args.oracle_model,
    )
    columns = Columns.of([result])
    for table in columns.tables():
        chosen = columns.table(table)
        print(
            table_markdown(
                columns.titles.get(table, f"{args.domain}: {result['label']}"), table_rows([result], chosen), chosen
            ),
            end="",
        )


def cmd_relearn(args) -> None:
    from knowundo.attacks.relearn import relearn
    from knowundo.layout import relearned_adapter
    from knowundo.models.load import checkpoint_weights
    from knowundo.stage import Stage

    cfg = _config(args)
    _prepare_model(cfg, lambda: (Stage("relearn", cfg, args.domain).data, checkpoint_weights(args.adapter)))
    record = relearn(cfg, args.domain, args.adapter)
    print(
        f"relearned {args.domain}: {record['steps']} steps on {record['items']} unlearn train items, train loss "
        f"{record['train_loss']:.4f} -> {relearned_adapter(args.adapter)}"
    )


def cmd_check(args) -> int:
    from knowundo.preflight import preflight

    preset, cfg = _settings(args, [f"model.name={args.model}"] if args.model else [], check=False)
    print(f"preset {preset}")
    report = preflight(cfg)
    for line in report.lines:
        print(line)
    for problem in report.problems:
        print(f"knowundo: error: {problem}", file=sys.stderr)
    if report.problems:
        return 2
    print("check passed")
    return 0


def cmd_methods(args) -> None:
    import dataclasses

    from knowundo.methods import defines_region, get_method, method_names, method_params, relabels, trained_sides

    cfg = _config(args)
    for name in method_names():
        method = get_method(name)
        params = method_params(cfg.unlearn.method_args, name)
        needs = [
            flag
            for flag, on in (
                ("retain data", method.retain),
                ("a region from localization", method.localized),
                ("a region of its own", defines_region(method)),
                ("relabelled forget answers", relabels(method)),
                ("alternative answers", "alternative" in trained_sides(method)),
                ("hidden states", method.hidden_states),
            )
            if on
        ]
        needs += [f"reference outputs ({side})" for side in sorted(method.reference_sides(params))]
        params = dataclasses.asdict(params)
        print(f"{name:14} {method.summary()}")
        print(
            f"{'':14} needs: {', '.join(needs) or 'forget data only'}; parameters: "
            + ", ".join(f"{k}={v}" for k, v in params.items())
        )


def cmd_run(args) -> None:
    from knowundo.distributed import is_main
    from knowundo.pipeline import run_benchmark
    from knowundo.report import first_table

    flags = (("domains", "run.domains"), ("methods", "run.methods"), ("model", "model.name"), ("vanilla", "model.name"))
    overrides = [f"{key}={getattr(args, flag)}" for flag, key in flags if getattr(args, flag) is not None]
    if args.vanilla is not None:
        overrides += ["run.finetune=false", "run.oracle=false"]
    if args.oracle_model is not None:
        overrides += ["run.oracle=true", f"run.oracle_model={args.oracle_model}"]
    cfg = _config(args, overrides)

    command = shlex.join(["knowundo", *args.argv])
    report = run_benchmark(cfg, args.out, force=args.force, progress=not args.quiet, command=command)
    if is_main():
        print(first_table(report / "table.md"), end="")
        print(f"full report (every prompt variant, categories, MIA, efficiency, curves): {report}")


def cmd_sweep(args) -> None:
    from knowundo.sweep import run_sweep

    flags = (("domains", "run.domains"), ("rows", "sweep.rows"))
    cfg = _config(args, [f"{key}={getattr(args, flag)}" for flag, key in flags if getattr(args, flag) is not None])
    report = run_sweep(cfg, args.out, progress=not args.quiet, command=shlex.join(["knowundo", *args.argv]))
    print((report / "sweep.md").read_text(), end="")
    print(f"sweep report (Pareto plots, chosen_<domain>.yaml): {report}")


def cmd_report(args) -> None:
    from knowundo.report import build_report, results_page

    out = build_report(args.results, args.out)
    print((out / ("sweep.md" if (out / "sweep.md").is_file() else "table.md")).read_text(), end="")
    print(f"report -> {out}")
    if args.page:
        print(f"results page -> {results_page(args.results, args.page, report=out)}")


COMMANDS = {
    "data": cmd_data,
    "finetune": cmd_finetune,
    "localize": cmd_localize,
    "unlearn": cmd_unlearn,
    "relearn": cmd_relearn,
    "eval": cmd_eval,
    "check": cmd_check,
    "methods": cmd_methods,
    "run": cmd_run,
    "sweep": cmd_sweep,
    "report": cmd_report,
}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # usage errors (2) and --help (0) end here, as a return code
        return exc.code
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    silence_known()
    # peft imports bitsandbytes when installed; on CPU it warns about an optional kernel package on import
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        code = COMMANDS[args.command](args)
    except KnowUndoError as exc:
        print(f"knowundo: error: {exc}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as exc:
        detail = f": {exc}" if str(exc) else "; finished stages are kept, run the same command again to resume"
        print(f"knowundo: interrupted{detail}", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
