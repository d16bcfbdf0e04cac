"""Rows as Ray tasks against rows one after another, side by side on this machine: a finished run's rows of one
domain trained and evaluated again from its fine-tune, oracle and region, once serially and once with
`run.executor=ray` (`run.ray_cpus` CPUs and threads per task), each on its own copy of the run. Prints both wall
times, their ratio, and whether the two tables are equal.

Usage: python benchmarks/ray_rows.py --run DIR [--domain privacy] [--ray-cpus 1] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rows_again(source: Path, target: Path, domain: str) -> None:
    """A copy of the run without the domain's rows (unlearning, attacks, evaluations of the rows)."""
    shutil.copytree(source, target)
    shutil.rmtree(target / domain / "unlearn")
    for result in (target / domain / "eval").glob("*.json"):
        if result.stem not in ("base", "vanilla", "oracle"):
            result.unlink()


def timed(run_dir: Path, domain: str, extra: list[str]) -> float:
    started = time.perf_counter()
    command = [sys.executable, "-m", "knowundo.cli", "run", "--out", str(run_dir), "--domains", domain, "--quiet"]
    done = subprocess.run([*command, *extra], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"knowundo run failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished `knowundo run` directory")
    parser.add_argument("--domain", default="privacy")
    parser.add_argument("--ray-cpus", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="knowundo-ray-rows-"))
    serial, ray = work / "serial", work / "ray"
    for target in (serial, ray):
        rows_again(args.run, target, args.domain)
    serial_seconds = timed(serial, args.domain, [])
    ray_seconds = timed(ray, args.domain, ["--set", "run.executor=ray", "--set", f"run.ray_cpus={args.ray_cpus}"])
    equal = (serial / "report" / "table.md").read_text() == (ray / "report" / "table.md").read_text()
    print(f"rows of {args.domain}, serial: {serial_seconds:.0f} s")
    print(f"rows of {args.domain}, Ray tasks of {args.ray_cpus} CPU(s): {ray_seconds:.0f} s")
    print(f"ray / serial: {ray_seconds / serial_seconds:.2f}x; tables {'equal' if equal else 'differ'}")


if __name__ == "__main__":
    main()
