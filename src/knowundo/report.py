"""Reports from a results directory, without recomputing: the paper's comparison table (one per prompt variant)
as Markdown, CSV and JSON, a per-category breakdown, membership-inference AUCs, an efficiency table (paper
Table 5) and PNG curves of the metrics across unlearning steps (paper Figure 4); and a results page, one Markdown
file that states how a run was made (command, code, date, machine) and shows what it measured."""

from __future__ import annotations

import csv
import io
import math
import os
import random
import shutil
from pathlib import Path

from knowundo.artifacts import EVAL_RESULT_KIND, atomic_path, read_json, write_json
from knowundo.errors import KnowUndoError
from knowundo.evaluate.general import MC_TASK
from knowundo.evaluate.metric import MAIN_TABLE, PROBES_TABLE, ROBUSTNESS_TABLE, Column, Columns, number
from knowundo.evaluate.selection import SCORES
from knowundo.findings import check_findings, compare_regions, findings_markdown, regions_markdown
from knowundo.general_change import EXPLANATION as GENERAL_CHANGE_EXPLANATION
from knowundo.general_change import general_changes
from knowundo.layout import (
    BASE_LABEL,
    OOD_SUFFIX,
    ORACLE_LABEL,
    REGION_SEPARATOR,
    REUSED_SUFFIX,
    RUN_RECORD,
    SCOPES,
    STAGES_LOG,
    SWEEP_RESULTS,
    VANILLA_LABEL,
    report_dir,
    split_checkpoint_label,
)
from knowundo.methods import method_names
from knowundo.replicates import (
    Bootstrap,
    Replicates,
    column_mean,
    group_replicates,
    primary_results,
    replicate_seed,
    row_intervals,
)


def collect_results(results_dir: str | Path, skip: Path | None = None, requests: bool = False) -> list[dict]:
    """Every evaluation result file under ``results_dir`` (unfinished ``.partial`` stages and the report
    directory itself are skipped), in row order; results of one domain and label with different training seeds are
    that row's replicates (``run.seeds``), two with the same seed an error. ``requests``: the results after each
    of ``run.requests`` instead (each names its request), which the other tables leave out."""
    root = Path(results_dir)
    if not root.is_dir():
        raise KnowUndoError(f"{root}: results directory not found")
    results, seen = [], {}
    for path in sorted(root.rglob("*.json")):
        if any(part.endswith(".partial") for part in path.relative_to(root).parts):
            continue
        if skip is not None and skip in path.parents:
            continue
        try:
            data = read_json(path)
        except (ValueError, UnicodeDecodeError):
            continue  # not ours (or not JSON at all): a report never executes or trusts other files
        if not isinstance(data, dict) or data.get("kind") != EVAL_RESULT_KIND:
            continue
        if "columns" not in data:
            raise KnowUndoError(
                f"{path}: a result without report columns (written by an older knowundo); evaluate the model again"
            )
        if bool(data.get("request")) != requests:
            continue
        key = (data["domain"], data["label"], replicate_seed(data), (data.get("request") or {}).get("index"))
        if key in seen:
            raise KnowUndoError(
                f"two results for {key[0]}/{key[1]} (seed {key[2]}): {seen[key]} and {path}; pass --label to "
                f"`knowundo eval` to tell them apart"
            )
        seen[key] = path
        results.append({**data, "path": str(path)})
    if not results and not requests:
        raise KnowUndoError(f"{root}: no evaluation results (files written by `knowundo eval --out`)")
    return sorted(results, key=_row_order(root))


def _row_order(root: Path):
    """base, vanilla, then the run's row labels in the order `knowundo run` was given them (run.json), then other
    labels by their method's place in the registry, then the rest alphabetically; an unlearning checkpoint
    (``ga@20``) right after its run, by step."""
    listed = [BASE_LABEL, VANILLA_LABEL, ORACLE_LABEL]
    if (root / RUN_RECORD).is_file():
        listed += [label for label in read_json(root / RUN_RECORD).get("methods", []) if label not in listed]
    registered = method_names()

    def key(result: dict) -> tuple:
        label, step = split_checkpoint_label(result["label"])
        row = label.removesuffix(REUSED_SUFFIX)  # a row of run.requests with the first request's region
        method = row.split(REGION_SEPARATOR)[0].removesuffix(OOD_SUFFIX)
        rank = (
            listed.index(row)
            if row in listed
            else len(listed) + (registered.index(method) if method in registered else len(registered))
        )
        request = (result.get("request") or {}).get("index", 0)
        return result["domain"], rank, label, -1 if step is None else step, request

    return key


def provenance(results: list[dict]) -> dict:
    """Training seeds, data hashes and library versions of the results a report was built from (each result file
    has its own; a report mixing several says so by listing them all)."""
    metas = [r.get("meta") or {} for r in results]
    versions = [m.get("versions") for m in metas if m.get("versions")]
    return {
        "seeds": sorted({seed for seed in map(replicate_seed, results) if seed is not None}),
        "data_hashes": {f"{r['domain']}/{r['label']}": m.get("data_hash") for r, m in zip(results, metas)},
        "versions": versions[0] if versions and all(v == versions[0] for v in versions) else versions,
    }


def _variants(results: list[dict], columns: list[Column]) -> list[str | None]:
    """The prompt variants a table has sections for (none if all its columns are per model)."""
    if not any(c.level == "variant" for c in columns):
        return [None]
    return list(dict.fromkeys(variant for r in results for variant in r["prompts"]))


def table_rows(results: list[dict], columns: list[Column]) -> list[dict]:
    """One flat row per (prompt variant, domain, model) with every column's value: the numbers behind a table
    (model-level values repeat in each variant's rows)."""
    rows = []
    for variant in _variants(results, columns):
        for r in results:
            if variant is not None and variant not in r["prompts"]:
                continue
            row = (
                {"prompt": variant, "domain": r["domain"], "method": r["label"]}
                if variant is not None
                else {"domain": r["domain"], "method": r["label"]}
            )
            rows.append({**row, **{c.key: c.value(r, variant) for c in columns}})
    return rows


def mean_rows(rows: list[Replicates], columns: list[Column], intervals: dict[int, dict]) -> list[dict]:
    """:func:`table_rows` with each row's mean over its seeds; with several seeds, also their number and each
    value's 95% interval (``<key>_low``, ``<key>_high``) from ``intervals`` (per row's ``id``:
    :func:`knowundo.replicates.row_intervals`)."""
    if all(len(row.results) == 1 for row in rows):
        return table_rows(primary_results(rows), columns)
    table = []
    for variant in _variants([r for row in rows for r in row.results], columns):
        for row in rows:
            if variant is not None and variant not in row.results[0]["prompts"]:
                continue
            record = {"prompt": variant} if variant is not None else {}
            record.update({"domain": row.domain, "method": row.label, "seeds": len(row.results)})
            record.update({c.key: column_mean(c, row.results, variant) for c in columns})
            for column in columns:
                where = intervals.get(id(row), {}).get(variant if column.level == "variant" else None, {})
                record[f"{column.key}_low"], record[f"{column.key}_high"] = where.get(column.key) or (None, None)
            table.append(record)
    return table


def _with_interval(column: Column, row: dict) -> str:
    """A cell: the value, and ``±h`` (half the 95% interval's width) where the row has one that is not a point."""
    low, high = row.get(f"{column.key}_low"), row.get(f"{column.key}_high")
    text = column.format(row[column.key])
    if low is None or high is None or not math.isfinite(high - low) or high - low <= 0 or column.fmt == "ppl":
        return text
    return f"{text} ±{column.format((high - low) / 2)}"


def _markdown(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out) + "\n"


def _legend(columns: list[Column]) -> str:
    return "; ".join(f"{c.header}: {c.doc}" for c in columns if c.doc) + ".\n"


ROW_LEGEND = (
    "Rows: `base` the model before fine-tuning, `vanilla` the fine-tuned model, `oracle` the same recipe on "
    "the Retention Scope only (never saw the Unlearn Scope: where perfect unlearning would land); a method "
    "name retains on "
    "the retention scope, `_ood` on the general-knowledge set instead; `@memflex` trains only inside the "
    "MemFlex region of that domain (`memflex` always trains there, `rmu` in its own layers); "
    "`@N` is an unlearning checkpoint at step N.\n"
)


KNOWS_THE_DATA = (5.0, 95.0)  # a fine-tuned model knows its data: Unlearn Success <= 5, Retention Success >= 95


def knowledge_warning(result: dict) -> str | None:
    """One line when a fine-tuned (vanilla) model does not know its data on the val splits (no system prompt):
    an unlearning number is only meaningful against a model that knew what it was asked to forget."""
    values = result.get("prompts", {}).get("none")
    if result.get("label") != VANILLA_LABEL or not values:
        return None
    most_unlearn, least_retention = KNOWS_THE_DATA
    failed = [f"Unlearn Success {values['unlearn_success']:.1f} > {most_unlearn:g}"] * (
        values["unlearn_success"] > most_unlearn
    )
    failed += [f"Retention Success {values['retention_success']:.1f} < {least_retention:g}"] * (
        values["retention_success"] < least_retention
    )
    if not failed:
        return None
    return (
        f"the fine-tuned model does not know its data ({' and '.join(failed)} on the val splits), so the "
        f"unlearning numbers measure little; raise {_knowledge_setting(result)}"
    )


def _knowledge_setting(result: dict) -> str:
    """The fine-tune setting that trains longer: with a target accuracy, the epoch cap when the target was missed
    and the target itself when it was reached; without one, the epochs."""
    training = result.get("meta", {}).get("training") or {}
    if training.get("target_accuracy") is None:
        return "finetune.epochs"
    return "finetune.target_accuracy" if training.get("target_reached") else "finetune.max_epochs"


def table_markdown(title: str, rows: list[dict], columns: list[Column], notes: str = "", preface: str = "") -> str:
    """One section per prompt variant (if the table has per-variant columns), one table per domain;
    ``preface`` (warnings) above the tables."""
    shown = [c for c in columns if c.position is not None]
    text = []
    for variant in dict.fromkeys(row.get("prompt") for row in rows):
        if variant is not None:
            text.append(f"## Prompt: {variant}\n")
        chosen = [row for row in rows if row.get("prompt") == variant]
        for domain in dict.fromkeys(row["domain"] for row in chosen):
            lines = [
                [row["method"], *(_with_interval(c, row) for c in shown)] for row in chosen if row["domain"] == domain
            ]
            text.append(f"### {domain}\n\n" + _markdown(["Method", *(c.title for c in shown)], lines))
    seeds = max((row.get("seeds", 1) for row in rows), default=1)
    spread = (
        f"Each value is the mean over a row's seeds (up to {seeds}); ±: half the width of its 95% interval (a "
        "bootstrap over the seeds and the val items; the bounds in the .csv/.json, each seed's values in "
        "seeds.csv).\n\n"
        if seeds > 1
        else ""
    )
    return f"# {title}\n\n" + preface + spread + "\n".join(text) + "\n" + _legend(shown) + notes


def category_markdown(results: list[dict], columns: Columns) -> tuple[str, list[dict]]:
    """The per-category values of the breakdown columns (no system prompt): which kinds of knowledge go."""
    shown = {scope: columns.breakdown(scope) for scope in SCOPES}
    names = " / ".join(dict.fromkeys(c.header.split(" ", 1)[-1] for cs in shown.values() for c in cs))
    text, rows = [f"# Per-category breakdown (prompt: none; {names})\n"], []
    for domain in dict.fromkeys(r["domain"] for r in results):
        chosen = [r for r in results if r["domain"] == domain and "none" in r["prompts"]]
        if not chosen:
            continue
        categories = [(scope, c) for scope in SCOPES for c in chosen[0]["prompts"]["none"][scope]["by_category"]]
        lines = []
        for r in chosen:
            cells = [r["label"]]
            for scope, category in categories:
                values = r["prompts"]["none"][scope]["by_category"].get(category, {})
                cells.append(" / ".join(c.format(values.get(c.path[-1])) for c in shown[scope]))
                rows.append(
                    {
                        "domain": domain,
                        "method": r["label"],
                        "scope": scope,
                        "category": category,
                        "items": values.get("items"),
                        **{c.path[-1]: values.get(c.path[-1]) for c in shown[scope]},
                    }
                )
            lines.append(cells)
        header = ["Method"] + [f"{c} ({'UL' if scope == 'unlearn' else 'RT'})" for scope, c in categories]
        text.append(f"## {domain}\n\n" + _markdown(header, lines))
    return "\n".join(text), rows


SAMPLES_PER_CATEGORY = {"unlearn": 3, "retention": 2}
SAMPLE_CHARS = 160


def _cell(text: str | None) -> str:
    """A generation as one Markdown table cell: one line, pipes escaped, long ones cut with an ellipsis."""
    if text is None:
        return "–"
    text = " ".join(text.split()).replace("|", "\\|")
    return (text[:SAMPLE_CHARS].rstrip() + "…") if len(text) > SAMPLE_CHARS else (text or "(empty)")


def sample_questions(result: dict, scope: str) -> list[dict]:
    """A fixed set of val questions of one scope: SAMPLES_PER_CATEGORY[scope] per category, drawn with a seed
    from the records (the same items for every model of a domain)."""
    variant = next(iter(result["prompts"]))
    by_category: dict[str, list[dict]] = {}
    for record in result["prompts"][variant][scope]["per_item"]:
        by_category.setdefault(record["category"] or "-", []).append(record)
    chosen = []
    for category, records in sorted(by_category.items()):
        rng = random.Random(f"{result['domain']}/{scope}/{category}")
        chosen += sorted(rng.sample(records, min(SAMPLES_PER_CATEGORY[scope], len(records))), key=lambda r: r["index"])
    return chosen


def samples_markdown(results: list[dict]) -> str:
    """For each domain, the chosen questions with the gold answer and every model's greedy generation under
    every prompt variant, side by side."""
    text = [
        "# Generations to read\n",
        "A fixed, seeded set of val questions per domain (3 unlearn and 2 retention "
        f'per category); generations longer than {SAMPLE_CHARS} characters end with "…".\n',
    ]
    for domain in dict.fromkeys(r["domain"] for r in results):
        chosen = [r for r in results if r["domain"] == domain and r["prompts"]]
        if not chosen or "generation" not in next(iter(chosen[0]["prompts"].values()))["unlearn"]["per_item"][0]:
            continue
        variants = list(dict.fromkeys(v for r in chosen for v in r["prompts"]))
        text.append(f"## {domain}\n")
        for scope in SCOPES:
            for question in sample_questions(chosen[0], scope):
                text.append(
                    f"### {scope} · {question['category'] or '-'} · item {question['index']}\n\n"
                    f"**Question:** {_cell(question['text'])}  \n**Gold:** {_cell(question['answer'])}\n"
                )
                lines = []
                for r in chosen:
                    cells = []
                    for variant in variants:
                        records = r["prompts"].get(variant, {}).get(scope, {}).get("per_item", [])
                        match = next((x for x in records if x["index"] == question["index"]), None)
                        cells.append(_cell(match.get("generation") if match else None))
                    lines.append([r["label"], *cells])
                text.append(_markdown(["Model", *(f"prompt: {v}" for v in variants)], lines))
        text.append(worst_probe_markdown(chosen))
    return "\n".join(text)


def worst_probe_markdown(results: list[dict]) -> str:
    """Per row of one domain, the adversarial probe family that left the lowest Unlearn Success and the greedy
    answers to it on the unlearn items it brought back most of."""
    rows = [r for r in results if (r.get("probe_worst") or {}).get("samples")]
    if not rows:
        return ""
    text = [
        "### Under the worst adversarial probe\n\n"
        "Per row, the probe family that brought the most back on the unlearn split (its Unlearn Success), and the "
        "model's greedy answer to that family's probe for the items it recovered most of (a prefilled opening in "
        "brackets).\n"
    ]
    lines = []
    for r in rows:
        worst = r["probe_worst"]
        for sample in worst["samples"]:
            opening = f"[{sample['prefill']}] " if sample.get("prefill") else ""
            lines.append(
                [
                    r["label"],
                    f"{sample['family']} ({_fixed_pct(worst['unlearn']['success'])})",
                    _cell(sample["probe"]),
                    _cell(sample["gold"]),
                    _cell(opening + sample["generation"]),
                ]
            )
    text.append(_markdown(["Model", "Worst family (UL)", "Probe", "Gold", "Answer"], lines))
    return "\n".join(text)


def _fixed_pct(value) -> str:
    value = number(value)
    return "-" if value is None else f"{value:.1f}"


def probes_notes(results: list[dict]) -> str:
    """Which probe families the data supports, per domain (the same items for every row, so one row's counts): the
    items each family probed per split, the probes the length limit cut or dropped, and the families that probed no
    item (shown "-")."""
    notes = []
    for domain in dict.fromkeys(r["domain"] for r in results):
        first = next((r for r in results if r["domain"] == domain and any(k.startswith("probe_") for k in r)), None)
        if first is None:
            continue
        families = {
            k.removeprefix("probe_"): v for k, v in first.items() if k.startswith("probe_") and k != "probe_worst"
        }
        unsupported = [name for name, v in families.items() if not any(v[scope]["items"] for scope in SCOPES)]
        parts = []
        for name, values in families.items():
            if name in unsupported:
                continue
            cut = [
                f"{scope} {values[scope].get('truncated', 0)} cut, {values[scope].get('dropped', 0)} dropped"
                for scope in SCOPES
                if values[scope].get("truncated") or values[scope].get("dropped")
            ]
            counts = ", ".join(f"{scope} {values[scope]['items']}" for scope in SCOPES)
            parts.append(
                f"{name}: {counts}" + (f" (probes longer than the model's length: {'; '.join(cut)})" if cut else "")
            )
        notes.append(
            f"{domain}: items probed per family and split: {'; '.join(parts)}."
            + (
                f" Not supported by this data (no item has the fields): {', '.join(unsupported)}."
                if unsupported
                else ""
            )
        )
    return "".join(note + "\n" for note in notes)


def general_markdown(rows: list[dict]) -> str:
    """One table per domain: each row's general ability, its change against the base model and the paired tests
    (:mod:`knowundo.general_change`)."""
    asked = next((row[f"{MC_TASK}_questions"] for row in rows if f"{MC_TASK}_questions" in row), None)
    steps = (
        f"the bundled MC task: {asked} questions, {100 / asked:.1f} points each"
        if asked
        else "a question is worth 100 / its number of questions"
    )
    text = [f"# General ability against the base model\n\n{GENERAL_CHANGE_EXPLANATION.format(steps=steps)}\n"]
    for domain in dict.fromkeys(row["domain"] for row in rows):
        mine = [row for row in rows if row["domain"] == domain]
        tasks = list(dict.fromkeys(key.removesuffix("_lost") for row in mine for key in row if key.endswith("_lost")))
        header = ["Row", "General", "Δ", "p (signed-rank)"]
        for task in tasks:
            header += ["General MC" if task == MC_TASK else task, "Δ", "lost / gained", "p (McNemar)"]
        lines = []
        for row in mine:
            line = [row["label"]]
            line += (
                [f"{row['general']:.1f}", f"{row['general_change']:+.1f}", f"{row['general_p']:.3g}"]
                if "general" in row
                else ["-"] * 3
            )
            for task in tasks:
                line += (
                    [
                        f"{row[task]:.1f}",
                        f"{row[f'{task}_change']:+.1f}",
                        f"{row[f'{task}_lost']} / {row[f'{task}_gained']}",
                        f"{row[f'{task}_p']:.3g}",
                    ]
                    if f"{task}_lost" in row
                    else ["-"] * 4
                )
            lines.append(line)
        text.append(f"## {domain}\n\n" + _markdown(header, lines))
    return "\n".join(text)


def efficiency_rows(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        training = (r.get("meta") or {}).get("training") or {}
        if training.get("stage") != "unlearn":
            continue
        peak, start = training.get("peak_memory_mb"), training.get("start_memory_mb")
        rows.append(
            {
                "domain": r["domain"],
                "method": r["label"],
                "seconds_per_step": training.get("seconds_per_step"),
                "peak_memory_mb": peak,
                "training_memory_mb": peak - start if peak and start else None,
                "trainable_parameters": training.get("optimized_parameters"),
                "steps": training.get("steps"),
            }
        )
    return rows


def efficiency_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""

    def fixed(value, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        [
            r["domain"],
            r["method"],
            fixed(r["seconds_per_step"], 3),
            fixed(r["peak_memory_mb"], 0),
            fixed(r["training_memory_mb"], 0),
            str(r["trainable_parameters"]),
            str(r["steps"]),
        ]
        for r in rows
    ]
    return (
        "# Efficiency per unlearning step (paper Table 5)\n\nPeak memory: GPU allocated memory, or process RSS "
        "on CPU; 'in training' is the rise above the level at the start of training.\n\n"
        + _markdown(["Domain", "Method", "s / step", "peak MB", "MB in training", "trainable params", "steps"], lines)
    )


def plot_curves(results: list[dict], domain: str, target: Path) -> bool:
    """Unlearn Success, Retention Success and PPL (log scale) against the unlearning step, one line per
    method; step 0 is the fine-tuned (vanilla) model when its result is present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results if r["domain"] == domain and r.get("curve")]
    if not runs:
        return False
    vanilla = next(
        (r for r in results if r["domain"] == domain and r["label"] == VANILLA_LABEL and "none" in r["prompts"]), None
    )
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.2))
    palette = plt.get_cmap("tab20").colors  # 20 distinct colours; markers tell apart rows beyond that
    for index, r in enumerate(runs):
        points = list(r["curve"])
        if vanilla is not None:
            v = vanilla["prompts"]["none"]
            points.insert(
                0,
                {
                    "step": 0,
                    "unlearn_success": v["unlearn_success"],
                    "retention_success": v["retention_success"],
                    "unlearn_ppl": v["unlearn"]["ppl"],
                    "retention_ppl": v["retention"]["ppl"],
                },
            )
        steps = [p["step"] for p in points]
        style = {"color": palette[index % len(palette)], "marker": "os^D"[index // len(palette) % 4], "ms": 3}
        axes[0].plot(steps, [p["unlearn_success"] for p in points], label=r["label"], **style)
        axes[1].plot(steps, [p["retention_success"] for p in points], **style)
        axes[2].plot(steps, [min(number(p["unlearn_ppl"]), 1e12) for p in points], color=style["color"])
        axes[2].plot(
            steps, [min(number(p["retention_ppl"]), 1e12) for p in points], color=style["color"], linestyle="--"
        )
    titles = ("Unlearn Success ↑", "Retention Success ↑", "PPL (solid: unlearn, dashed: retention)")
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("unlearning step")
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-2, 102)
    axes[1].set_ylim(-2, 102)
    axes[2].set_yscale("log")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center right", fontsize=8)
    fig.suptitle(f"{domain}: metrics across unlearning (val splits, no system prompt)")
    return _saved(fig, target, rect=(0, 0, 0.88, 1))


def checkpoint_notes(results: list[dict]) -> str:
    """Which rows report a checkpoint chosen on the selection split (``unlearn.select``), and why."""
    lines = []
    for r in results:
        selected = ((r.get("meta") or {}).get("training") or {}).get("selected")
        if selected:
            lines.append(
                f"- {r['domain']} {r['label']}: step {selected['step']} of {selected['steps']} "
                f"(`{selected['rule']}`: {selected['reason']})"
            )
    if not lines:
        return ""
    return (
        "\n\nReported at a checkpoint chosen on the selection split (`unlearn.select`):\n\n" + "\n".join(lines) + "\n"
    )


def robustness_notes(results: list[dict]) -> str:
    """What a reader comparing with a paper needs to know: which statistic forget quality used, and which
    implementation quantized the models (bitsandbytes on a GPU, the same codebooks in PyTorch otherwise)."""
    statistics = sorted({str(r["forget_quality"]["statistic"]) for r in results if r.get("forget_quality")})
    paths = sorted({str(v.get("path")) for r in results for v in (r.get("quantization") or {}).values()})
    notes = [
        f"Forget quality statistic: {', '.join(statistics)}." if statistics else "",
        f"Quantization ran through: {', '.join(paths)}." if paths else "",
    ]
    return "".join(note + "\n" for note in notes if note)


def plot_robustness(rows: list[dict], columns: list[Column], domain: str, target: Path) -> bool:
    """Unlearn Success per row: plain, and after each attack and probe of a table (the robustness or the probes
    table; grouped bars: a bar well below the plain one is forgetting that did not survive)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [row for row in rows if row["domain"] == domain]
    attacks = [c for c in columns if c.position is not None and c.key.endswith("unlearn_success")]
    if not chosen or not attacks:
        return False
    names = {
        "plain_unlearn_success": "no attack",
        "probes_plain_unlearn_success": "asked plainly",
        "relearn_unlearn_success": "relearned",
        "paraphrase_unlearn_success": "paraphrased questions",
    }
    series = [
        (names.get(c.key, c.header.removeprefix("UL ").removesuffix(" UL")), [row.get(c.key) for row in chosen])
        for c in attacks
    ]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.7 * len(chosen) + 2), 5.0))
    palette = plt.get_cmap("tab10" if len(series) <= 10 else "tab20").colors
    for index, (name, values) in enumerate(series):
        xs = [i + (index - (len(series) - 1) / 2) * width for i in range(len(chosen))]
        ax.bar(
            xs,
            [number(v) if v is not None else float("nan") for v in values],
            width,
            label=name,
            color=palette[index % len(palette)],
        )
    ax.set_xticks(range(len(chosen)), [row["method"] for row in chosen], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 102)
    ax.set_ylabel("Unlearn Success ↑ (unlearn val)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(len(series), 6), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.suptitle(f"{domain}: Unlearn Success without attack and under each (no system prompt)")
    return _saved(fig, target, rect=(0, 0, 1, 0.97))


# the columns the requests table shows (where the results have them) and the curves of its plot
REQUEST_COLUMNS = (
    "unlearn_success",
    "unrequested_accuracy",
    "retention_success",
    "avg_success",
    "general_heldout_accuracy",
    "probe_worst_unlearn_success",
)
REQUEST_CURVES = ("unlearn_success", "unrequested_accuracy", "retention_success", "general_heldout_accuracy")
REQUESTS_EXPLANATION = (
    "Every row unlearns the requests in turn, each from its own model after the request before (the vanilla model "
    "at the first). After request r, UL Succ is measured on the val items of the instances requested so far "
    "(requests 1..r), UL rest on those not requested yet (they must stay known; '-' once all are requested), "
    "RT Succ on the Retention Scope, General on the general set; `vanilla` and `oracle` are evaluated on the "
    "same items at each request. `<row>+reused` trains every request in the first request's MemFlex region; "
    "`<row>` alone localizes again on its own model for each request.\n"
)


def request_table(results: list[dict], columns: list[Column]) -> list[dict]:
    """One flat row per (domain, model, request) of ``run.requests`` with every column's value (no system
    prompt). A ``+reused`` row's first request is its re-localized twin's (the pipeline trains them once): its
    curve starts there."""
    rows = [
        {
            "domain": r["domain"],
            "method": r["label"],
            "request": r["request"]["index"],
            "requests": r["request"]["of"],
            **{c.key: c.value(r, "none") for c in columns},
        }
        for r in results
    ]
    firsts = {(row["domain"], row["method"]): row for row in rows if row["request"] == 1}
    table = []
    for row in rows:
        twin = firsts.get((row["domain"], row["method"].removesuffix(REUSED_SUFFIX)))
        if row["method"].endswith(REUSED_SUFFIX) and twin and (row["domain"], row["method"]) not in firsts:
            firsts[(row["domain"], row["method"])] = twin
            table.append({**twin, "method": row["method"]})
        table.append(row)
    return table


def _request_comparisons(rows: list[dict], single: list[dict], domain: str) -> str:
    """Whether a re-localized region beats a reused one (each pair of rows, at the last request and over all
    requests), and each row after the last request against the same row given the whole request at once."""
    mine = [row for row in rows if row["domain"] == domain]
    last = max(row["requests"] for row in mine)
    by = {(row["method"], row["request"]): row for row in mine}

    def avg(label: str, requests: range) -> float | None:
        values = [by[(label, r)].get("avg_success") for r in requests if (label, r) in by]
        values = [number(v) for v in values if v is not None]
        return sum(values) / len(values) if values else None

    lines = []
    for reused in sorted({row["method"] for row in mine if row["method"].endswith(REUSED_SUFFIX)}):
        own = reused.removesuffix(REUSED_SUFFIX)
        final, every = range(last, last + 1), range(1, last + 1)
        scores = [avg(own, final), avg(reused, final), avg(own, every), avg(reused, every)]
        if None in scores:
            continue
        cells = ", ".join(
            f"{name} {_fixed_pct(by[(own, last)].get(key))} vs {_fixed_pct(by[(reused, last)].get(key))}"
            for key, name in (
                ("unlearn_success", "UL"),
                ("retention_success", "RT"),
                ("general_heldout_accuracy", "General"),
            )
        )
        verdict = "re-localized ahead" if scores[0] > scores[1] else "reused ahead" if scores[1] > scores[0] else "tied"
        lines.append(
            f"- `{own}` re-localized vs `{reused}` after request {last}: {cells}; Avg Succ {scores[0]:.1f} vs "
            f"{scores[1]:.1f} ({verdict}; mean over the {last} requests {scores[2]:.1f} vs {scores[3]:.1f})"
        )
    text = ""
    if lines:
        text += "\n**Re-localized or reused region**\n\n" + "\n".join(lines) + "\n"
    once = {row["method"]: row for row in single if row["domain"] == domain and row.get("prompt") in (None, "none")}
    table = [
        [
            label,
            *(
                f"{_fixed_pct(once[label].get(key))} / {_fixed_pct(by[(label, last)].get(key))}"
                for key in ("unlearn_success", "retention_success", "general_heldout_accuracy")
            ),
        ]
        for label in dict.fromkeys(row["method"] for row in mine)
        if label in once and (label, last) in by and label not in (VANILLA_LABEL, ORACLE_LABEL)
    ]
    if table:
        text += (
            f"\n**One request against {last} in turn** (the whole request at once, from the comparison table / "
            f"after the last of the {last} requests: the same items)\n\n"
            + _markdown(["Method", "UL Succ", "RT Succ", "General"], table)
        )
    return text


def requests_markdown(rows: list[dict], columns: list[Column], single: list[dict]) -> str:
    """The requests table per domain (each row's values after each request), the region comparison and the
    comparison with the single request (``single``: the comparison table's rows)."""
    shown = [c for c in columns if c.key in REQUEST_COLUMNS and any(row.get(c.key) is not None for row in rows)]
    shown.sort(key=lambda c: REQUEST_COLUMNS.index(c.key))
    text = [f"# Deletion requests one after another ({rows[0]['requests']} requests)\n\n" + REQUESTS_EXPLANATION]
    for domain in dict.fromkeys(row["domain"] for row in rows):
        lines = [
            [row["method"], str(row["request"]), *(c.format(row[c.key]) for c in shown)]
            for row in rows
            if row["domain"] == domain
        ]
        table = _markdown(["Method", "Request", *(c.title for c in shown)], lines)
        text.append(f"## {domain}\n\n{table}{_request_comparisons(rows, single, domain)}")
    return "\n".join(text) + "\n" + _legend(shown)


def plot_requests(rows: list[dict], columns: list[Column], domain: str, target: Path) -> bool:
    """Each row's curves across the requests: UL Succ on what was requested so far, UL rest on what was not yet,
    RT Succ and General (a reused region dashed in its row's colour; vanilla and oracle in grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [row for row in rows if row["domain"] == domain]
    panels = [c for key in REQUEST_CURVES for c in columns if c.key == key]
    if not mine or not panels:
        return False
    rows_of_panels = math.ceil(len(panels) / 2)
    fig, grid = plt.subplots(rows_of_panels, 2, figsize=(12.5, 4.2 * rows_of_panels + 0.6), squeeze=False)
    axes = list(grid.flat)
    for unused in axes[len(panels) :]:
        unused.set_visible(False)
    palette = plt.get_cmap("tab20").colors
    colours: dict[str, tuple] = {}  # a row and its reused-region twin share one
    for label in dict.fromkeys(row["method"] for row in mine):
        points = [row for row in mine if row["method"] == label]
        colour = colours.setdefault(label.removesuffix(REUSED_SUFFIX), palette[len(colours) % len(palette)])
        reference = label in (VANILLA_LABEL, ORACLE_LABEL)
        style = {
            "color": ("0.2" if label == VANILLA_LABEL else "0.6") if reference else colour,
            "linestyle": ":" if reference else "--" if label.endswith(REUSED_SUFFIX) else "-",
            "marker": "o",
            "ms": 3,
        }
        for ax, column in zip(axes, panels):
            xs = [row["request"] for row in points if row.get(column.key) is not None]
            ys = [number(row[column.key]) for row in points if row.get(column.key) is not None]
            ax.plot(xs, ys, label=label if column is panels[0] else None, **style)
    last = max(row["requests"] for row in mine)
    for ax, column in zip(axes, panels):
        ax.set_title(column.title if column.key != "unlearn_success" else "UL Succ ↑ (requested so far)")
        ax.set_xlabel("after request")
        ax.set_xticks(range(1, last + 1))
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center right", fontsize=8)
    fig.suptitle(f"{domain}: {last} deletion requests one after another (val splits, no system prompt)")
    return _saved(fig, target, rect=(0, 0, 0.83, 1))


def plot_scopes(rows: list[dict], domain: str, target: Path) -> bool:
    """Every row of a domain (no system prompt) where it lands: Unlearn Success against Retention Success, with
    each value's 95% interval as error bars (the upper right is the goal: forgotten and kept)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [row for row in rows if row["domain"] == domain and row.get("prompt") == "none"]
    chosen = [
        row for row in chosen if row.get("unlearn_success") is not None and row.get("retention_success") is not None
    ]
    if not chosen:
        return False

    def spread(row: dict, key: str) -> list[float]:
        low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
        return [0.0, 0.0] if low is None or high is None else [max(0.0, row[key] - low), max(0.0, high - row[key])]

    fig, ax = plt.subplots(figsize=(7.5, 6.0))
    palette = plt.get_cmap("tab20").colors
    for index, row in enumerate(chosen):
        ax.errorbar(
            row["unlearn_success"],
            row["retention_success"],
            xerr=[[v] for v in spread(row, "unlearn_success")],
            yerr=[[v] for v in spread(row, "retention_success")],
            fmt="o",
            capsize=3,
            color=palette[index % len(palette)],
            label=f"{row['method']} ({row.get('seeds', 1)})",
        )
    ax.set_xlim(-2, 102)
    ax.set_ylim(-2, 102)
    ax.set_xlabel("Unlearn Success ↑ (unlearn val)")
    ax.set_ylabel("Retention Success ↑ (retention val)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, title="row (seeds)")
    fig.suptitle(f"{domain}: mean over seeds with 95% intervals (no system prompt)")
    return _saved(fig, target)


def pareto_front(points: list[dict]) -> list[dict]:
    """The points no other point beats on both Unlearn and Retention Success, by Unlearn Success."""
    front = [
        p
        for p in points
        if not any(
            q["unlearn_success"] >= p["unlearn_success"]
            and q["retention_success"] >= p["retention_success"]
            and (q["unlearn_success"], q["retention_success"]) != (p["unlearn_success"], p["retention_success"])
            for q in points
        )
    ]
    return sorted(front, key=lambda p: p["unlearn_success"])


def plot_pareto(domain_results: dict, domain: str, target: Path) -> bool:
    """Every point of a sweep on the selection split: Unlearn Success against Retention Success, coloured by
    General; each row its marker, its chosen point ringed; the front of all points dashed; the vanilla model and
    the oracle as references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = domain_results["rows"]
    everything = [p for entry in rows.values() for p in entry["points"]]
    if not everything:
        return False
    generals = [p["general"] for p in everything] + [r["general"] for r in domain_results["references"].values()]
    norm = matplotlib.colors.Normalize(min(generals), max(generals))
    fig, ax = plt.subplots(figsize=(8.0, 6.0))
    markers = "osD^v<>PXh*"
    for index, (row, entry) in enumerate(rows.items()):
        points, marker = entry["points"], markers[index % len(markers)]
        ax.scatter(
            [p["unlearn_success"] for p in points],
            [p["retention_success"] for p in points],
            c=[p["general"] for p in points],
            cmap="viridis",
            norm=norm,
            marker=marker,
            s=40,
            edgecolors="grey",
            linewidths=0.5,
            label=row,
        )
        chosen = points[entry["chosen"]]
        ax.scatter(
            chosen["unlearn_success"],
            chosen["retention_success"],
            marker=marker,
            s=170,
            facecolors="none",
            edgecolors="red",
            linewidths=1.5,
        )
    front = pareto_front(everything)
    ax.plot(
        [p["unlearn_success"] for p in front],
        [p["retention_success"] for p in front],
        "k--",
        lw=0.8,
        label="front of all points",
    )
    for name, reference in domain_results["references"].items():
        ax.scatter(
            reference["unlearn_success"],
            reference["retention_success"],
            marker="+" if name == "oracle" else "x",
            s=90,
            color=plt.get_cmap("viridis")(norm(reference["general"])),
            label=name,
        )
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="General (selection split)")
    ax.set_xlim(-2, 102)
    ax.set_ylim(-2, 102)
    ax.set_xlabel("Unlearn Success ↑ (selection split)")
    ax.set_ylabel("Retention Success ↑ (selection split)")
    ax.grid(alpha=0.3)
    legend = ax.legend(fontsize=7, loc="lower left", title="row (chosen: ringed red)", title_fontsize=7)
    for handle in legend.legend_handles[: len(rows)]:  # a row's marker, not the colour of its first point
        handle.set_array(None)
        handle.set_facecolor("lightgrey")
    fig.suptitle(f"{domain}: every sweep point")
    return _saved(fig, target)


def chosen_config(domain_results: dict, selection: float) -> dict:
    """The chosen points of one domain as settings for `knowundo run --config` (with the selection split they
    were chosen on, so the run trains on the same items)."""
    per_method, method_args = {}, {}
    for row, entry in domain_results["rows"].items():
        settings = dict(entry["points"][entry["chosen"]]["settings"])
        per_method[row] = {"learning_rate": settings.pop("learning_rate")}
        if settings:
            method_args[row] = settings
    unlearn = {"per_method": per_method, **({"method_args": method_args} if method_args else {})}
    return {"data": {"selection": selection}, "unlearn": unlearn}


def _scores(values: dict) -> list[str]:
    return [f"{values[key]:.1f}" for key in SCORES]


def sweep_report(results_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """The pages of a sweep from its ``report/sweep.json``: sweep.md / sweep.csv (each row's chosen point and why,
    then every point), pareto_<domain>.png and chosen_<domain>.yaml."""
    import yaml

    out = Path(out_dir) if out_dir is not None else report_dir(results_dir)
    source = report_dir(results_dir) / SWEEP_RESULTS
    if not source.is_file():
        raise KnowUndoError(f"{results_dir}: no {source.relative_to(results_dir)}; run `knowundo sweep` there first")
    results = read_json(source)
    cfg = results["config"]
    sweep, selection = cfg["sweep"], cfg["data"]["selection"]
    budget = {len(entry["points"]) for d in results["domains"].values() for entry in d["rows"].values()}
    rule = {
        "best_avg": f"the highest Avg Success with General within {sweep['general_tolerance']:g} points of the "
        "vanilla model's",
        "oracle_match": "the best Retention Success among the points that forget at least as much as the oracle "
        "(MUSE's rule)",
    }[sweep["rule"]]
    parts = [
        f"# Sweep: one point per row, chosen by `{sweep['rule']}`\n\n"
        f"Every row was trained at {' / '.join(str(b) for b in sorted(budget))} points (learning rates "
        f"{', '.join(f'{float(lr):g}' for lr in sweep['learning_rates'])}"
        + (f"; parameters {sweep['params']}" if sweep["params"] else "")
        + f") and scored on the selection split (`data.selection={selection:g}`: train items set aside, known to "
        f"the model, unlearned by no row, reported by no table). Rule: {rule}. The chosen settings, as a config "
        f"file: `chosen_<domain>.yaml` (`knowundo run --config`).\n"
    ]
    csv_rows = []
    for domain, entry in results["domains"].items():
        refs = entry["references"]
        lines = [[name, "-", *_scores(values), ""] for name, values in refs.items()]
        for row, swept in entry["rows"].items():
            chosen = swept["points"][swept["chosen"]]
            lines.append([row, chosen["point"], *_scores(chosen), swept["reason"]])
        header = ["Row", "chosen point", "UL Succ", "RT Succ", "Avg Succ", "General", "why"]
        every = []
        for row, swept in entry["rows"].items():
            for index, point in enumerate(swept["points"]):
                marker = "**chosen**" if index == swept["chosen"] else ""
                every.append([row, point["point"], *_scores(point), marker])
                csv_rows.append(
                    {
                        "domain": domain,
                        "row": row,
                        "point": point["point"],
                        **point["settings"],
                        **{key: point[key] for key in SCORES},
                        "chosen": index == swept["chosen"],
                    }
                )
        parts.append(
            f"## {domain}\n\n"
            + _markdown(header, lines)
            + "\n### Every point\n\n"
            + _markdown(["Row", "point", "UL Succ", "RT Succ", "Avg Succ", "General", ""], every)
        )
        plot_pareto(entry, domain, out / f"pareto_{domain}.png")
        chosen = chosen_config(entry, selection)
        header_comment = (
            f"# chosen by `knowundo sweep` ({sweep['rule']}) on the {domain} selection split; "
            f"use with: knowundo run --config <this file> (with the sweep's other settings)\n"
        )
        _write_text(out / f"chosen_{domain}.yaml", header_comment + yaml.safe_dump(chosen, sort_keys=False))
    _write_text(out / "sweep.md", "\n".join(parts))
    _write_csv(out / "sweep.csv", csv_rows)
    return out


def _saved(fig, target: Path, rect: tuple = (0, 0, 1, 1)) -> bool:
    """A figure laid out, written whole or not at all, and closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=rect)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return True


def _write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def _write_csv(target: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    _write_text(target, buffer.getvalue())


def first_table(table_md: Path) -> str:
    """The first prompt variant's section of ``table.md`` (what `knowundo run` prints at the end)."""
    text = Path(table_md).read_text()
    sections = text.split("\n## Prompt: ")
    return "## Prompt: " + sections[1] if len(sections) > 1 else text


def build_report(results_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write every table the results declare (``table``: the comparison, one section per prompt variant; others
    such as ``mia``, ``fluency``) as .md/.csv (the comparison also .json), findings.md/json (the paper's six
    findings checked and tested), regions.md/json (each method inside the MemFlex region against itself, tested),
    samples.md, general.md/csv (every row's general ability against the base
    model's, question by question), categories.md/csv, efficiency.md/csv and curves_<domain>.png. Rows with
    several training seeds show their mean with 95% intervals, and add seeds.csv (each seed's values) and
    scopes_<domain>.png; samples, breakdowns and curves show each row's first seed. With ``run.requests``, also
    requests.md/csv/json and requests_<domain>.png (each row after each request)."""
    run_record = read_json(Path(results_dir) / RUN_RECORD) if (Path(results_dir) / RUN_RECORD).is_file() else {}
    if run_record.get("kind") == "sweep":
        return sweep_report(results_dir, out_dir)
    out = Path(out_dir) if out_dir is not None else report_dir(results_dir)
    every = collect_results(results_dir, skip=out.resolve() if out.exists() else out)
    first_seed = run_record.get("seed")
    if first_seed is not None:  # a seed the run no longer lists (an earlier invocation's) is not part of its report
        seeds = run_record.get("config", {}).get("run", {}).get("seeds") or [first_seed]
        every = [r for r in every if replicate_seed(r) in seeds]
    replicates = group_replicates(every, first_seed)
    results = primary_results(replicates)  # one per row, its first seed's: samples, breakdowns, curves
    columns, main, intervals = Columns.of(every), [], {}
    domains = list(dict.fromkeys(row.domain for row in replicates))
    if seeded := any(len(row.results) > 1 for row in replicates):
        variants = [v for v in _variants(every, columns.all) if v is not None]
        for domain in domains:  # one resampling plan per domain, one pass over it per row for every table
            mine = [row for row in replicates if row.domain == domain]
            plan = Bootstrap(mine)
            for row in mine:
                if len(row.results) > 1:
                    intervals[id(row)] = row_intervals(plan, row, columns.all, variants)
    for table in columns.tables():
        chosen = columns.table(table)
        rows = mean_rows(replicates, chosen, intervals)
        main = rows if table == MAIN_TABLE else main
        title = columns.titles.get(table, "KnowUnDo results" if table == MAIN_TABLE else table)
        notes = {
            MAIN_TABLE: ROW_LEGEND + checkpoint_notes(results),
            ROBUSTNESS_TABLE: robustness_notes(results),
            PROBES_TABLE: probes_notes(results),
        }
        notes = notes.get(table, "")
        warnings = [(r["domain"], knowledge_warning(r)) for r in results] if table == MAIN_TABLE else []
        preface = "".join(f"> **Warning ({domain}):** {warning}\n\n" for domain, warning in warnings if warning)
        _write_text(out / f"{table}.md", table_markdown(title, rows, chosen, notes, preface))
        _write_csv(out / f"{table}.csv", rows)
        write_json(out / f"{table}.json", {**provenance(every), "rows": rows})
        if table in (ROBUSTNESS_TABLE, PROBES_TABLE):
            for domain in dict.fromkeys(row["domain"] for row in rows):
                plot_robustness(rows, chosen, domain, out / f"{table}_{domain}.png")
    findings = check_findings(every, first_seed)
    _write_text(out / "findings.md", findings_markdown(findings))
    write_json(out / "findings.json", {**provenance(every), "findings": findings})
    regions = compare_regions(every, first_seed)
    if regions:
        _write_text(out / "regions.md", regions_markdown(regions))
        write_json(out / "regions.json", {**provenance(every), "comparisons": regions})
    else:
        for stale in (out / "regions.md", out / "regions.json"):
            stale.unlink(missing_ok=True)
    if seeded:  # each seed's values, and where the rows land with their intervals
        _write_csv(
            out / "seeds.csv",
            [{"seed": replicate_seed(r), **row} for r in every for row in table_rows([r], columns.table(MAIN_TABLE))],
        )
        for domain in domains:
            plot_scopes(main, domain, out / f"scopes_{domain}.png")
    else:
        for stale in [out / "seeds.csv", *out.glob("scopes_*.png")] if out.is_dir() else []:
            stale.unlink(missing_ok=True)
    _write_text(out / "samples.md", samples_markdown(results))
    if general := general_changes(results):
        _write_text(out / "general.md", general_markdown(general))
        _write_csv(out / "general.csv", general)
    else:  # no base result now: an earlier comparison would mislead
        for name in ("general.md", "general.csv"):
            (out / name).unlink(missing_ok=True)
    categories_text, category_rows = category_markdown(results, columns)
    _write_text(out / "categories.md", categories_text)
    _write_csv(out / "categories.csv", category_rows)
    efficiency = efficiency_rows(results)
    if efficiency:
        _write_text(out / "efficiency.md", efficiency_markdown(efficiency))
        _write_csv(out / "efficiency.csv", efficiency)
    for domain in dict.fromkeys(r["domain"] for r in results):
        plot_curves(results, domain, out / f"curves_{domain}.png")
    _requests_report(results_dir, out, main)
    return out


def _requests_report(results_dir: str | Path, out: Path, single: list[dict]) -> None:
    """requests.md/csv/json and requests_<domain>.png from the results of ``run.requests`` (none: no such files;
    an earlier report's are removed)."""
    results = collect_results(results_dir, skip=out.resolve() if out.exists() else out, requests=True)
    stale = [out / "requests.md", out / "requests.csv", out / "requests.json", *out.glob("requests_*.png")]
    for path in stale:
        path.unlink(missing_ok=True)
    if not results:
        return
    declared = Columns.of(results)  # the comparison's columns, and the worst probe from the robustness table
    extra = [c for c in declared.all if c.key in REQUEST_COLUMNS and c.table != MAIN_TABLE]
    columns = declared.table(MAIN_TABLE) + extra
    rows = request_table(results, columns)
    _write_text(out / "requests.md", requests_markdown(rows, columns, single))
    _write_csv(out / "requests.csv", rows)
    write_json(out / "requests.json", {**provenance(results), "rows": rows})
    for domain in dict.fromkeys(row["domain"] for row in rows):
        plot_requests(rows, columns, domain, out / f"requests_{domain}.png")


PAGE_SECTIONS = (
    ("table.md", "The comparison"),
    ("findings.md", "The paper's findings"),
    ("regions.md", "What the MemFlex region changes"),
    ("general.md", "General ability against the base model"),
    ("robustness.md", "Robustness"),
    ("probes.md", "Adversarial probes"),
    ("requests.md", "Deletion requests one after another"),
    ("efficiency.md", "Efficiency"),
    ("samples.md", "What the models answer"),
    ("sweep.md", "Sweep"),
)


def _stamp(run: dict) -> str:
    versions = run.get("versions", {})
    machine = run.get("machine") or {}
    described = ", ".join(
        str(part)
        for part in (
            machine.get("platform"),
            machine.get("cpus") and f"{machine['cpus']} CPUs",
            machine.get("gpu") or machine.get("device"),
        )
        if part
    )
    code = run.get("code")
    rows = [
        ("command", f"`{run['command']}`" if run.get("command") else "not recorded"),
        ("code", (f"commit `{code}`, " if code else "") + f"knowundo {versions.get('knowundo', '?')}"),
        ("started", run.get("started") or "not recorded"),
        ("machine", described or "not recorded"),
        (
            "libraries",
            ", ".join(f"{name} {versions[name]}" for name in ("torch", "transformers", "peft") if name in versions),
        ),
        ("settings key", f"`{run.get('settings_key', '?')}` (the whole configuration: `run.json`)"),
    ]
    return _markdown(["how the run was made", ""], [[name, value] for name, value in rows])


def _demoted(text: str) -> str:
    """A report file's headings one level down, under the page's own section heading."""
    return "\n".join("#" + line if line.startswith("#") else line for line in text.strip().splitlines())


def results_page(
    run_dir: str | Path, page: str | Path, report: Path | None = None, title: str | None = None, preface: str = ""
) -> Path:
    """One Markdown page of a finished run: how it was made (from ``run.json``: command, code revision, start,
    machine, libraries), its stage log with the time of every stage, then the report's tables, findings, general
    ability, robustness, efficiency and samples, and its plots (copied into a folder beside the page). The report
    (``report``: an up-to-date report directory) is built from the results first otherwise."""
    run_dir, page = Path(run_dir), Path(page)
    if not (run_dir / RUN_RECORD).is_file():
        raise KnowUndoError(f"{run_dir}: no {RUN_RECORD}; a results page is written from a `knowundo run` directory")
    run = read_json(run_dir / RUN_RECORD)
    report = report or build_report(run_dir)
    model = run.get("config", {}).get("model", {}).get("name", "?")
    kind = "Sweep" if run.get("kind") == "sweep" else "Results"
    heading = title or f"{kind}: {model} on {', '.join(run.get('domains', []))}"
    log = (run_dir / STAGES_LOG).read_text().strip() if (run_dir / STAGES_LOG).is_file() else ""
    if not run.get("command") and log.startswith("$ "):  # a run from before run.json kept its command
        run = {**run, "command": log.splitlines()[0][2:].split("  # ")[0]}
    parts = [
        f"# {heading}\n\nWritten by `knowundo report {run_dir} --page {page}` from the run below.\n",
        _stamp(run),
        preface,
    ]
    if log:
        parts.append(f"## Stages\n\n```text\n{log}\n```\n")
    for name, section in PAGE_SECTIONS:
        if (report / name).is_file():
            text = (report / name).read_text().strip()
            # a report file under its own title, one level down; one without a title under the section's
            parts.append(_demoted(text) if text.startswith("# ") else f"## {section}\n\n{_demoted(text)}")
    plots = sorted(report.glob("*.png"))
    if plots:
        folder = page.with_suffix("")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        figures = []
        for plot in plots:
            shutil.copy2(plot, folder / plot.name)
            figures.append(f"![{plot.stem}]({os.path.relpath(folder / plot.name, page.parent)})")
        parts.append("## Plots\n\n" + "\n\n".join(figures) + "\n")
    _write_text(page, "\n".join(part.strip() + "\n" for part in parts if part.strip()))
    return page
