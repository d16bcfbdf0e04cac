"""One DeepSpeed ZeRO-3 unlearning run on a small Llama-shaped random model: GA+KL, whose frozen reference
adapter sits beside the trained one on a sharded model — the part no CPU test can reach. Prepares the model,
adapter and data like unlearn_step.py, then runs `knowundo unlearn` under `accelerate launch` with the shipped
ZeRO-3 config on the visible GPUs and prints the record's steps, time per step and losses.

Usage: python benchmarks/zero3_step.py [--processes 1]   (needs a GPU and `pip install deepspeed`)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import unlearn_step

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    unlearn_step.add_shape_arguments(parser, hidden=1024, intermediate=2816, layers=8, heads=16, accum=4, steps=2)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--method", default="ga_kl")
    args = parser.parse_args()
    args.dtype = "bfloat16"
    work = Path(tempfile.mkdtemp(prefix="knowundo-zero3-"))
    unlearn_step.prepare(work, args)
    overrides = [arg for o in unlearn_step._overrides(work, args) for arg in ("--set", o)]
    command = [
        "accelerate",
        "launch",
        "--config_file",
        str(ROOT / "configs/accelerate/deepspeed_zero3.yaml"),
        "--num_processes",
        str(args.processes),
        "-m",
        "knowundo.cli",
        "unlearn",
        "--domain",
        "privacy",
        "--method",
        args.method,
        "--finetuned",
        str(work / "finetuned"),
        "--out",
        str(work / "zero3"),
        *overrides,
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"ZeRO-3 run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    record = json.loads((work / "zero3" / "unlearn.json").read_text())
    losses = [entry["loss"] for entry in record["loss_history"]]
    print(
        f"ZeRO-3 {args.method} on {args.processes} GPU(s): {record['steps']} steps, "
        f"{record['seconds_per_step']:.2f} s/step, peak {record['peak_memory_mb'] / 1024:.2f} GB, losses {losses}, "
        f"batch {record['batch']}"
    )


if __name__ == "__main__":
    main()
