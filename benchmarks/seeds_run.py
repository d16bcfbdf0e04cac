"""The tiny default with three training seeds (issue 33): `knowundo run --set run.seeds=[42,1,2]` (every row trained
and evaluated per seed, the fine-tune shared), its stage time against the one-seed run's, and a results page with
every table value as the mean over seeds with its 95% interval and the paper's findings decided by paired tests.

With --from DIR (a finished one-seed run of the same settings, e.g. the work directory `default_run.py --keep`
leaves), that run is copied first and its stages are reused as seed 42's: only seeds 1 and 2 are trained, and the
one-seed stage time is read from its stage log.

Usage: python benchmarks/seeds_run.py --out DIR [--from DIR] [--seeds 42,1,2] [--page docs/results/tiny-seeds.md]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from default_run import STAGE_LINE


def stage_seconds(log: str) -> tuple[float, float]:
    """(seconds of the run's own seed's stages, of the other seeds') over every stage line of ``log`` that ran."""
    own = other = 0.0
    for where, _, seconds, _ in STAGE_LINE.findall(log):
        if "/seeds/" in where:
            other += float(seconds)
        else:
            own += float(seconds)
    return own, other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="run directory (resumable)")
    parser.add_argument("--from", dest="source", help="a finished one-seed run to start from (copied)")
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--page", help="the results page to write (e.g. docs/results/tiny-seeds.md)")
    args = parser.parse_args()
    out = Path(args.out)
    if args.source and not out.exists():
        shutil.copytree(args.source, out)
    one_seed_log = (out / "stages.log").read_text() if (out / "stages.log").is_file() else ""
    seeds = f"run.seeds=[{args.seeds}]"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "knowundo.cli", "run", "--out", str(out), "--quiet", "--set", seeds],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"knowundo run failed:\n{done.stderr[-3000:]}")
    own, other = stage_seconds(done.stdout)
    one = stage_seconds(one_seed_log)[0] or own  # the reused run's stage log, or this invocation's first seed
    count = len(args.seeds.split(","))
    lines = [
        f"command: `knowundo run --set '{seeds}'`"
        + (f" on a copy of a finished one-seed run ({args.source})" if args.source else ""),
        f"stage time of this invocation {own + other:.0f} s (wall time {wall:.0f} s): the first seed's stages (a "
        f"one-seed run's{', cached ones counting 0' if args.source else ''}) {own:.0f} s, the other {count - 1} "
        f"seeds' {other:.0f} s",
        f"{count} seeds against one: {(one + other) / one:.2f}x the one-seed stage time ({one:.0f} s)",
    ]
    findings = [line for line in done.stdout.splitlines() if "paper findings:" in line]
    print("\n".join(lines + findings))
    if args.page:
        from knowundo.report import results_page

        preface = "Run by `benchmarks/seeds_run.py`:\n\n" + "\n".join(f"- {line}" for line in lines + findings)
        results_page(out, args.page, title=f"The tiny default with {count} seeds", preface=preface)
        print(f"results page -> {args.page}")


if __name__ == "__main__":
    main()
