"""Reports from a results directory, without recomputing: the paper's comparison table (one per prompt variant)
as Markdown, CSV and JSON, a per-category breakdown, membership-inference AUCs, an efficiency table (paper
Table 5) and PNG curves of the metrics across unlearning steps (paper Figure 4)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from knowundo.artifacts import EVAL_RESULT_KIND, atomic_path, read_json, write_json
from knowundo.errors import KnowUndoError

METHOD_ORDER = ("base", "vanilla", "ga", "random_label", "adversarial", "ga_gd", "ga_gd_ood", "ga_kl", "ga_kl_ood",
                "memflex")
TABLE_COLUMNS = ("Method", "UL Succ ↑", "UL PPL ↑", "UL ROUGE-L ↓", "RT Succ ↑", "RT PPL ↓", "RT ROUGE-L ↑",
                 "Avg Succ ↑", "Leak ↓", "General ↑", "General MC ↑")


def number(value) -> float | None:
    """A metric as stored in JSON (non-finite values are the strings "inf" / "nan")."""
    if value is None:
        return None
    return float(value)


def format_ppl(value) -> str:
    value = number(value)
    if value is None:
        return "-"
    return ">1e10" if value > 1e10 else f"{value:.2f}"


def _fmt(value, digits: int = 1) -> str:
    value = number(value)
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def collect_results(results_dir: str | Path, skip: Path | None = None) -> list[dict]:
    """Every evaluation result file under ``results_dir`` (unfinished ``.partial`` stages and the report
    directory itself are skipped); two results for the same domain and label are an error."""
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
        key = (data["domain"], data["label"])
        if key in seen:
            raise KnowUndoError(f"two results for {key[0]}/{key[1]}: {seen[key]} and {path}; pass --label to "
                                f"`knowundo eval` to tell them apart")
        seen[key] = path
        results.append({**data, "path": str(path)})
    if not results:
        raise KnowUndoError(f"{root}: no evaluation results (files written by `knowundo eval --out`)")
    return sorted(results, key=_order)


def _order(result: dict) -> tuple:
    label = result["label"]
    rank = METHOD_ORDER.index(label) if label in METHOD_ORDER else len(METHOD_ORDER)
    return result["domain"], rank, label


def provenance(results: list[dict]) -> dict:
    """Seeds, data hashes and library versions of the results a report was built from (each result file has
    its own; a report mixing several says so by listing them all)."""
    metas = [r.get("meta") or {} for r in results]
    versions = [m.get("versions") for m in metas if m.get("versions")]
    return {"seeds": sorted({m.get("seed") for m in metas if m.get("seed") is not None}),
            "data_hashes": {f"{r['domain']}/{r['label']}": m.get("data_hash") for r, m in zip(results, metas)},
            "versions": versions[0] if versions and all(v == versions[0] for v in versions) else versions}


def table_rows(results: list[dict]) -> list[dict]:
    """One flat row per (prompt variant, domain, model): the numbers behind every table."""
    rows = []
    for r in results:
        general = r.get("general", {})
        lm_eval = general.get("lm_eval", {})
        for variant, v in r["prompts"].items():
            ul, rt = v["unlearn"], v["retention"]
            row = {"prompt": variant, "domain": r["domain"], "method": r["label"],
                   "unlearn_success": v["unlearn_success"], "unlearn_ppl": number(ul["ppl"]),
                   "unlearn_rougeL_recall": ul.get("rougeL_recall"), "unlearn_rougeL_f1": ul.get("rougeL_f1"),
                   "retention_success": v["retention_success"], "retention_ppl": number(rt["ppl"]),
                   "retention_rougeL_recall": rt.get("rougeL_recall"), "retention_rougeL_f1": rt.get("rougeL_f1"),
                   "avg_success": v["avg_success"], "unlearn_exact_match": ul["exact_match"],
                   "retention_exact_match": rt["exact_match"], "leak_rate_exact": ul.get("leak_rate_exact"),
                   "leak_rate_normalized": ul.get("leak_rate_normalized"),
                   "general_heldout_accuracy": general.get("heldout", {}).get("accuracy"),
                   "general_heldout_ppl": number(general.get("heldout", {}).get("ppl"))}
            for task, metrics in lm_eval.items():
                row[f"lm_eval_{task}"] = metrics.get("acc")
            rows.append(row)
    return rows


def _markdown(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out) + "\n"


def comparison_markdown(rows: list[dict]) -> str:
    """The paper's layout: Unlearn (Succ, PPL, ROUGE-L) | Retention (Succ, PPL, ROUGE-L) | Avg | general."""
    text = []
    tasks = sorted({k for row in rows for k in row if k.startswith("lm_eval_") and k != "lm_eval_knowundo_general_mc"})
    for variant in dict.fromkeys(row["prompt"] for row in rows):
        text.append(f"## Prompt: {variant}\n")
        for domain in dict.fromkeys(row["domain"] for row in rows if row["prompt"] == variant):
            lines = []
            for row in (r for r in rows if r["prompt"] == variant and r["domain"] == domain):
                lines.append([row["method"], _fmt(row["unlearn_success"]), format_ppl(row["unlearn_ppl"]),
                              _fmt(row["unlearn_rougeL_recall"]), _fmt(row["retention_success"]),
                              format_ppl(row["retention_ppl"]), _fmt(row["retention_rougeL_recall"]),
                              _fmt(row["avg_success"]), _fmt(row["leak_rate_normalized"]),
                              _fmt(row["general_heldout_accuracy"]), _fmt(row.get("lm_eval_knowundo_general_mc"))]
                             + [_fmt(row.get(task)) for task in tasks])
            header = list(TABLE_COLUMNS) + [task.removeprefix("lm_eval_") + " ↑" for task in tasks]
            text.append(f"### {domain}\n\n" + _markdown(header, lines))
    legend = ("Succ: token accuracy (Unlearn Succ = 100 - accuracy on the unlearn val split); PPL over answer "
              "tokens; ROUGE-L: recall of greedy generations against the gold answer; Leak: % of unlearn items "
              "whose generation still contains a protected value (normalized match); General: token accuracy on "
              "the held-out general-knowledge set; General MC: accuracy on the bundled multiple-choice task "
              "(lm-evaluation-harness).\n")
    return "# KnowUnDo results\n\n" + "\n".join(text) + "\n" + legend


def category_markdown(results: list[dict]) -> tuple[str, list[dict]]:
    """Token accuracy (and ROUGE-L recall) per category, no system prompt: which kinds of knowledge go."""
    text, rows = ["# Per-category breakdown (prompt: none; token accuracy / ROUGE-L recall)\n"], []
    for domain in dict.fromkeys(r["domain"] for r in results):
        chosen = [r for r in results if r["domain"] == domain and "none" in r["prompts"]]
        if not chosen:
            continue
        categories = [(scope, c) for scope in ("unlearn", "retention")
                      for c in chosen[0]["prompts"]["none"][scope]["by_category"]]
        lines = []
        for r in chosen:
            cells = [r["label"]]
            for scope, c in categories:
                m = r["prompts"]["none"][scope]["by_category"].get(c, {})
                cells.append(f"{_fmt(m.get('accuracy'))} / {_fmt(m.get('rougeL_recall'))}")
                rows.append({"domain": domain, "method": r["label"], "scope": scope, "category": c,
                             "items": m.get("items"), "accuracy": m.get("accuracy"),
                             "rougeL_recall": m.get("rougeL_recall"),
                             "leak_rate_normalized": m.get("leak_rate_normalized")})
            lines.append(cells)
        header = ["Method"] + [f"{c} ({'UL' if scope == 'unlearn' else 'RT'})" for scope, c in categories]
        text.append(f"## {domain}\n\n" + _markdown(header, lines))
    return "\n".join(text), rows


def mia_markdown(results: list[dict]) -> str:
    lines = [[r["domain"], r["label"]] + [f"{_fmt(v['retention'], 2)} / {_fmt(v['general'], 2)}"
                                          for v in r["mia"].values()] for r in results if r.get("mia")]
    if not lines:
        return ""
    scores = list(next(r for r in results if r.get("mia"))["mia"])
    return ("# Membership inference (AUC, unlearn val vs retention val / vs general held-out; 0.5 = no signal)\n\n"
            + _markdown(["Domain", "Method"] + scores, lines))


def efficiency_rows(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        training = (r.get("meta") or {}).get("training") or {}
        if training.get("stage") != "unlearn":
            continue
        peak, start = training.get("peak_memory_mb"), training.get("start_memory_mb")
        rows.append({"domain": r["domain"], "method": r["label"], "seconds_per_step": training.get("seconds_per_step"),
                     "peak_memory_mb": peak, "training_memory_mb": peak - start if peak and start else None,
                     "trainable_parameters": training.get("optimized_parameters"), "steps": training.get("steps")})
    return rows


def efficiency_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = [[r["domain"], r["method"], _fmt(r["seconds_per_step"], 3), _fmt(r["peak_memory_mb"], 0),
              _fmt(r["training_memory_mb"], 0), str(r["trainable_parameters"]), str(r["steps"])] for r in rows]
    return ("# Efficiency per unlearning step (paper Table 5)\n\nPeak memory: GPU allocated memory, or process RSS "
            "on CPU; 'in training' is the rise above the level at the start of training.\n\n"
            + _markdown(["Domain", "Method", "s / step", "peak MB", "MB in training", "trainable params", "steps"],
                        lines))


def plot_curves(results: list[dict], domain: str, target: Path) -> bool:
    """Unlearn Success, Retention Success and PPL (log scale) against the unlearning step, one line per
    method; step 0 is the fine-tuned (vanilla) model when its result is present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results if r["domain"] == domain and r.get("curve")]
    if not runs:
        return False
    vanilla = next((r for r in results if r["domain"] == domain and r["label"] == "vanilla"
                    and "none" in r["prompts"]), None)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for r in runs:
        points = list(r["curve"])
        if vanilla is not None:
            v = vanilla["prompts"]["none"]
            points.insert(0, {"step": 0, "unlearn_success": v["unlearn_success"],
                              "retention_success": v["retention_success"], "unlearn_ppl": v["unlearn"]["ppl"],
                              "retention_ppl": v["retention"]["ppl"]})
        steps = [p["step"] for p in points]
        line, = axes[0].plot(steps, [p["unlearn_success"] for p in points], marker="o", ms=3, label=r["label"])
        axes[1].plot(steps, [p["retention_success"] for p in points], marker="o", ms=3, color=line.get_color())
        axes[2].plot(steps, [min(number(p["unlearn_ppl"]), 1e12) for p in points], color=line.get_color())
        axes[2].plot(steps, [min(number(p["retention_ppl"]), 1e12) for p in points], color=line.get_color(),
                     linestyle="--")
    titles = ("Unlearn Success ↑", "Retention Success ↑", "PPL (solid: unlearn, dashed: retention)")
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("unlearning step")
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-2, 102)
    axes[1].set_ylim(-2, 102)
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{domain}: metrics across unlearning (val splits, no system prompt)")
    fig.tight_layout()
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
    """Write table.md/csv/json, categories.md/csv, mia.md, efficiency.md/csv and curves_<domain>.png."""
    out = Path(out_dir) if out_dir is not None else Path(results_dir) / "report"
    results = collect_results(results_dir, skip=out.resolve() if out.exists() else out)
    rows = table_rows(results)
    _write_text(out / "table.md", comparison_markdown(rows))
    _write_csv(out / "table.csv", rows)
    write_json(out / "table.json", {**provenance(results), "rows": rows})
    categories_text, category_rows = category_markdown(results)
    _write_text(out / "categories.md", categories_text)
    _write_csv(out / "categories.csv", category_rows)
    _write_text(out / "mia.md", mia_markdown(results))
    efficiency = efficiency_rows(results)
    if efficiency:
        _write_text(out / "efficiency.md", efficiency_markdown(efficiency))
        _write_csv(out / "efficiency.csv", efficiency)
    for domain in dict.fromkeys(r["domain"] for r in results):
        plot_curves(results, domain, out / f"curves_{domain}.png")
    return out
