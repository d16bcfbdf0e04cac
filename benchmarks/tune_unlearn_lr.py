"""The rule that set a preset's per-method unlearning learning rates (the tiny preset's; ``--preset smollm2`` for the
real model's), re-runnable whenever the base or the recipe changes: for each row, the lowest lr of GRID that
forgets >= 50% of the privacy unlearn val split (Unlearn Success = 100 - teacher-forced token accuracy, no system
prompt), with the method's default parameters. Rows not listed keep the baselines' lr. Prints one line per (row,
lr) tried and the resulting `unlearn.per_method` block.

Usage: python benchmarks/tune_unlearn_lr.py [--preset tiny] [--rows memflex,npo,...] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

GRID = (1e-3, 3e-3, 1e-2, 2e-2, 3e-2, 5e-2, 1e-1)
ROWS = ("memflex", "npo", "npo@memflex", "simnpo", "simnpo@memflex", "idk_sft", "idk_dpo", "rmu", "undial")
TARGET = 50.0
DOMAIN = "privacy"


def unlearn_success(cfg, adapter: Path) -> float:
    from knowundo.evaluate.teacher_forced import evaluate_items
    from knowundo.models.load import load_adapter, load_base
    from knowundo.stage import Stage

    stage = Stage("eval", cfg, DOMAIN)
    model, tokenizer = load_base(cfg)
    model = load_adapter(model, adapter)
    scored = evaluate_items(model, stage.formatter(tokenizer), stage.data["unlearn"]["val"], cfg.eval.batch_size)
    return 100.0 - scored["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--out", type=Path, default=None, help="work directory (default: a temporary one)")
    args = parser.parse_args()

    from knowundo.config import load_config
    from knowundo.finetune import finetune
    from knowundo.layout import RunLabel
    from knowundo.localize import localize
    from knowundo.models.load import prepare_base
    from knowundo.unlearn import unlearn

    work = args.out or Path(tempfile.mkdtemp(prefix="knowundo-tune-"))
    base_cfg = load_config(args.preset, overrides=["unlearn.save_steps=0"])
    prepare_base(base_cfg, progress=False)
    finetune(base_cfg, DOMAIN, work / "finetune", progress=False)
    adapter = work / "finetune" / "adapter"
    chosen = {}
    for row in args.rows.split(","):
        label = RunLabel.parse(row)
        region = None
        if label.region or label.method == "memflex":
            localize(base_cfg, DOMAIN, adapter, work / "localize")
            region = work / "localize" / "region.json"
        for lr in GRID:
            cfg = load_config(
                args.preset,
                overrides=["unlearn.save_steps=0", "unlearn.per_method={}", f"unlearn.learning_rate={lr}"],
            )
            out = work / f"{row}-{lr:g}"
            unlearn(cfg, DOMAIN, label.method, adapter, out, region=region, progress=False)
            success = unlearn_success(cfg, out / "adapter")
            print(f"{row:16} lr {lr:<6g} Unlearn Success {success:5.1f}", flush=True)
            if success >= TARGET:
                chosen[row] = lr
                break
        else:
            print(f"{row:16} no lr of the grid forgets {TARGET:g}%", flush=True)
    print("per_method:")
    for row, lr in chosen.items():
        print(f'  "{row}": {{learning_rate: {lr:g}}}')


if __name__ == "__main__":
    main()
