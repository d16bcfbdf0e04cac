"""Forget-set scaling (issue 34): the same rows unlearned under deletion requests for a growing share of the Unlearn
Scope's instances (`data.forget_fraction`, TOFU's forget01 / 05 / 10), one `knowundo run` per fraction, each with
its own oracle; with --from, fraction 1 is a finished run of the same settings (e.g. `default_run.py --keep`'s).
Writes a page with each row's Unlearn Success (on the requested instances), the rest of the Unlearn Scope kept
(`UL rest`), Retention Success and General per fraction, and a plot of each against the fraction.

The robustness evaluations (attacks, probes) are off: the scaling is read on the main table's columns.

Usage: python benchmarks/forget_fraction.py --out DIR [--preset smollm2] [--fractions 0.25,0.5,1]
       [--methods ga_gd,npo,memflex] [--domains privacy] [--from A_FINISHED_RUN]
       [--page docs/results/tiny-forget-fraction.md] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

COLUMNS = (
    ("unlearn_success", "UL Succ ↑", "Unlearn Success (requested instances)"),
    ("unrequested_accuracy", "UL rest ↑", "the rest of the Unlearn Scope kept"),
    ("retention_success", "RT Succ ↑", "Retention Success"),
    ("general_heldout_accuracy", "General ↑", "General"),
)
QUIET = ["attack.relearn=false", "attack.probes=[]", "attack.quantize=[]", "attack.paraphrase=false"]


def run_fraction(out: Path, fraction: float, args) -> tuple[float, list[dict], str]:
    """One `knowundo run` at ``fraction``; its time, table rows (no system prompt) and command."""
    settings = [f"data.forget_fraction={fraction:g}", *QUIET, *args.set]
    argv = ["run", "--out", str(out), "--quiet", "--domains", args.domains, "--methods", args.methods]
    argv += ["--preset", args.preset] if args.preset else []
    argv += [part for setting in settings for part in ("--set", setting)]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "knowundo.cli", *argv], capture_output=True, text=True, env=os.environ)
    if done.returncode != 0:
        sys.exit(f"knowundo run failed at fraction {fraction:g}:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, table_rows(out), "knowundo " + " ".join(argv)


def table_rows(run: Path) -> list[dict]:
    rows = json.loads((run / "report" / "table.json").read_text())["rows"]
    return [r for r in rows if r.get("prompt", "none") == "none"]


def plot(results: dict[float, list[dict]], methods: list[str], domain: str, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = sorted(results)
    fig, axes = plt.subplots(1, len(COLUMNS), figsize=(4.2 * len(COLUMNS), 3.8), sharex=True)
    for ax, (key, header, title) in zip(axes, COLUMNS):
        for row in ["vanilla", "oracle", *methods]:
            values = [
                next((r.get(key) for r in results[f] if r["method"] == row and r["domain"] == domain), None)
                for f in fractions
            ]
            style = {"vanilla": ":", "oracle": "--"}.get(row, "-")
            ax.plot(fractions, [float("nan") if v is None else v for v in values], style, marker="o", label=row)
        ax.set_title(f"{title}", fontsize=9)
        ax.set_xlabel("share of the Unlearn Scope's instances requested")
        ax.set_ylabel(header)
        ax.set_ylim(0, 102)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{domain}: each row against the size of the deletion request")
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="work directory (one run per fraction; resumable)")
    parser.add_argument("--preset", help="the preset of every run (the tiny default without one)")
    parser.add_argument("--fractions", default="0.25,0.5,1")
    parser.add_argument("--methods", default="ga_gd,npo,memflex")
    parser.add_argument("--domains", default="privacy")
    parser.add_argument("--set", action="append", default=[], help="further settings for every run")
    parser.add_argument("--from", dest="source", help="a finished run of the same settings: fraction 1's rows")
    parser.add_argument("--page", help="the results page to write (e.g. docs/results/tiny-forget-fraction.md)")
    args = parser.parse_args()
    out, fractions = Path(args.out), [float(f) for f in args.fractions.split(",")]
    results, lines = {}, []
    for fraction in fractions:
        if fraction == 1 and args.source:  # the whole Unlearn Scope requested: the finished run itself
            results[fraction] = table_rows(Path(args.source))
            lines.append(f"fraction 1: the rows of the finished run {args.source} (no `UL rest`: nothing is left)")
            continue
        seconds, results[fraction], command = run_fraction(out / f"fraction-{fraction:g}", fraction, args)
        lines.append(f"`{command}`: {seconds:.0f} s")
        print(lines[-1], flush=True)
    first = out / f"fraction-{next(f for f in fractions if f != 1 or not args.source):g}"
    methods = args.methods.split(",")
    text = []
    for domain in args.domains.split(","):
        header = ["Method", *(f"{h} @ {f:g}" for _, h, _ in COLUMNS for f in fractions)]
        table = []
        for row in ["base", "vanilla", "oracle", *methods]:
            cells = [row]
            for key, _, _ in COLUMNS:
                for f in fractions:
                    value = next((r.get(key) for r in results[f] if r["method"] == row and r["domain"] == domain), None)
                    cells.append("-" if value is None else f"{value:.1f}")
            table.append(cells)
        text.append(f"## {domain}\n\n")
        text.append("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n")
        text += ["| " + " | ".join(cells) + " |\n" for cells in table]
        text.append("")
        if args.page:
            folder = Path(args.page).with_suffix("")
            folder.mkdir(parents=True, exist_ok=True)
            plot(results, methods, domain, folder / f"fractions_{domain}.png")
            text.append(f"\n![{domain}: each row against the fraction]({folder.name}/fractions_{domain}.png)\n")
    print("\n".join(text))
    if args.page:
        from knowundo.report import _stamp

        run = json.loads((first / "run.json").read_text())
        model = run["config"]["model"]["name"]
        page = [
            f"# Forget-set scaling on {'the tiny default' if model == 'tiny' else model}\n\n",
            "Written by `benchmarks/forget_fraction.py`: the same rows under deletion requests for a growing share of "
            "the Unlearn Scope's instances (`data.forget_fraction`), an oracle per fraction "
            "(it learned the rest of the Unlearn Scope too). UL Succ is read on the requested instances' val items, "
            "`UL rest` is the token accuracy on the others' (they must stay known). The robustness evaluations were "
            f"off ({', '.join(QUIET)}).\n\n",
            _stamp(run) + "\n\n",
            "Runs (wall time of each):\n\n",
            *(f"- {line}\n" for line in lines),
            "\n",
            *text,
        ]
        Path(args.page).write_text("".join(page))
        print(f"results page -> {args.page}")


if __name__ == "__main__":
    main()
