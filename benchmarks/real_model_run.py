"""The real small chat model through the whole benchmark: `knowundo run --preset smollm2` on both bundled domains
with the paper's eight rows (plus the base model and the oracle), timed per stage, and a results page written from
its report: the command, commit, date and machine, the stage lines with their times, the paper-layout table, the
findings, general ability against the base, the robustness table and samples of what the unlearned models say.

Issue 30's target: the paper's system (fine-tunes, oracle, the paper's rows and their evaluations) within 60
minutes on 2 cores. The relearning attack is off and one quantization scheme is kept, so that the time is the
paper's system's (turn them on with --set attack.relearn=true --set attack.quantize=[...]).

Usage: python benchmarks/real_model_run.py [--out DIR] [--page docs/results/smollm2.md] [--set k=v ...]
       python benchmarks/real_model_run.py --render DIR   (the page from a finished run's DIR/stages.log)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER_ROWS = "ga,random_label,adversarial,ga_gd,ga_gd_ood,ga_kl,ga_kl_ood,memflex"
SETTINGS = ["attack.relearn=false", "attack.quantize=[int4-g64]"]
BUDGET_SECONDS = 60 * 60


def command(out: Path, extra: list[str]) -> list[str]:
    sets = [arg for item in [*SETTINGS, *extra] for arg in ("--set", item)]
    return [
        "knowundo",
        "run",
        "--preset",
        "smollm2",
        "--domains",
        "privacy,copyright",
        "--methods",
        PAPER_ROWS,
        "--out",
        str(out),
        "--quiet",
        *sets,
    ]


def run(out: Path, extra: list[str]) -> None:
    """The run, its stdout kept beside it (``stages.log``) with the command and the start and end times."""
    argv = command(out, extra)
    started = datetime.datetime.now(datetime.timezone.utc)
    done = subprocess.run([sys.executable, "-m", "knowundo.cli", *argv[1:]], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"knowundo run failed:\n{done.stderr[-3000:]}")
    ended = datetime.datetime.now(datetime.timezone.utc)
    (out / "stages.log").write_text(
        f"$ {' '.join(argv)}\nstarted {started:%Y-%m-%d %H:%M} UTC, ended "
        f"{ended:%Y-%m-%d %H:%M} UTC, wall {(ended - started).total_seconds():.0f} s\n" + done.stdout
    )


def _section(path: Path, title: str) -> str:
    return f"## {title}\n\n{path.read_text().strip()}\n" if path.is_file() else ""


def render(out: Path, page: Path) -> None:
    log = (out / "stages.log").read_text()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"
    )
    ran, when, stages = log.split("\n", 2)
    timed = [re.match(r"\[(\w+)\] +\w+ +([\d.]+)s ", line) for line in stages.splitlines()]
    total = sum(float(match[2]) for match in timed if match)
    domains = {match[1] for match in timed if match} - {"all"}
    verdict = (
        f"stage time {total:.0f} s (the sum of the stage lines) = {total / BUDGET_SECONDS:.2f} of the 60-minute "
        f"target ({'met' if total <= BUDGET_SECONDS else 'not met'})"
        if len(domains) > 1
        else f"stage time {total:.0f} s (the sum of the stage lines) on {', '.join(sorted(domains))} alone; the "
        f"60-minute target is for both domains"
    )
    report = out / "report"
    parts = [
        f"# SmolLM2-135M-Instruct through the benchmark\n\nWritten by `benchmarks/real_model_run.py` from the run "
        f"below (commit {commit}, {machine}).\n\n```\n{ran}\n{when}\n```\n\n{verdict}\n",
        f"## Stages\n\n```\n{stages.split('## Prompt', 1)[0].strip()}\n```\n",
        _section(report / "table.md", "The paper's table"),
        _section(report / "findings.md", "Findings"),
        _section(report / "general.md", "General ability"),
        _section(report / "robustness.md", "Robustness"),
        _section(report / "samples.md", "What the models say"),
    ]
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(part for part in parts if part))
    print(f"{verdict}\nresults page -> {page}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/smollm2", help="run directory (resumable)")
    parser.add_argument("--page", default=str(ROOT / "docs" / "results" / "smollm2.md"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--render", metavar="DIR", help="only write the page from a finished run's DIR/stages.log")
    args = parser.parse_args()
    out = Path(args.render or args.out)
    if not args.render:
        run(out, args.overrides)
    render(out, Path(args.page))


if __name__ == "__main__":
    main()
