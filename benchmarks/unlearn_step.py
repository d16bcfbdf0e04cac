"""Time per unlearning step and peak memory of every registered method, side by side in one run, relative to `ga`
(and MemFlex relative to `ga_gd`, the loss it localizes). Target: every method with a retain side peaks at <= 1.1x
GA's memory (its forget term is backpropagated before the retain forward pass).

Each method runs in its own fresh process (peak memory is per process), on the same Llama-shaped model with
random weights, a "fine-tuned" LoRA adapter with non-zero A and B, and synthetic items of --seq tokens, at
batch 1 x accumulation --accum (the paper's Table 5 set-up is 1 x 16 x 256 tokens on a 7B model).
Peak memory is measured while the Trainer trains: sampled process RSS on CPU (interpreter and libraries
included, so ratios are diluted), torch.cuda.max_memory_allocated on a GPU.

Usage: python benchmarks/unlearn_step.py [--hidden 512 --layers 4 --seq 256 --accum 4 --steps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path


def _overrides(work: Path, args) -> list[str]:
    return [
        f"model.name={work / 'model'}",
        "model.max_length=1024",
        "data.source=local",
        f"data.path={work / 'data'}",
        "unlearn.epochs=1",
        "unlearn.batch_size=1",
        f"unlearn.grad_accum={args.accum}",
        "unlearn.save_steps=0",
        "unlearn.per_method={}",
        "localize.copies=1",
        "localize.selection=quantile",
        "localize.quantile=0.5",
        "eval.batch_size=4",
        f"unlearn.gradient_checkpointing={args.checkpointing}",
        f"model.dtype={args.dtype}",
    ]


def prepare(work: Path, args) -> None:
    """Model, tokenizer, non-trivial adapter, synthetic data and a MemFlex region, all under ``work``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from knowundo.artifacts import write_json
    from knowundo.config import TinyConfig, load_config
    from knowundo.localize import localize
    from knowundo.models.tiny import train_tokenizer

    torch.manual_seed(0)
    torch.set_default_dtype(getattr(torch, args.dtype))  # a 7B model is built in bf16 directly
    tokenizer = train_tokenizer(TinyConfig())
    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # random init of 7B is slow on CPU
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")
    lora = get_peft_model(
        model,
        LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM"),
    )
    lora.save_pretrained(work / "finetuned" / "adapter")

    rng = random.Random(0)
    words = [w for w in tokenizer.get_vocab() if w.isalpha() and len(w) > 3][:500]
    n_items = args.accum * args.steps

    def item(i: int, scope: str) -> dict:
        answer = " ".join(rng.choice(words) for _ in range(args.seq))
        ids = tokenizer(answer, add_special_tokens=False)["input_ids"][: args.seq - 16]
        return {"text": f"Question {i} about {scope}?", "labels": tokenizer.decode(ids)}

    for scope in ("unlearn", "retention"):
        write_json(
            work / "data" / "privacy" / f"{scope}.json",
            {"train": [item(i, scope) for i in range(n_items)], "val": [item(n_items, scope)]},
        )
    cfg = load_config("tiny", overrides=_overrides(work, args))
    localize(cfg, "privacy", work / "finetuned" / "adapter", work / "region")


def worker(work: Path, method: str, args) -> None:
    import time

    from transformers import TrainerCallback

    from knowundo.config import load_config
    from knowundo.methods import get_method
    from knowundo.unlearn import unlearn

    class StepClock(TrainerCallback):
        """Wall time of every optimizer step; the first (kernel selection, allocator warm-up) is left out."""

        def __init__(self):
            self.marks = []

        def on_step_begin(self, *a, **k):
            self.marks.append([time.perf_counter(), None])

        def on_step_end(self, *a, **k):
            self.marks[-1][1] = time.perf_counter()

    clock = StepClock()
    cfg = load_config("tiny", overrides=_overrides(work, args))
    region = work / "region" / "region.json" if get_method(method).localized else None
    record = unlearn(
        cfg,
        "privacy",
        method,
        work / "finetuned" / "adapter",
        work / "runs" / method,
        region=region,
        progress=False,
        callbacks=[clock],
    )
    steps = [end - start for start, end in clock.marks]
    steady = steps[1:] or steps
    print(
        json.dumps(
            {
                "method": method,
                "seconds_per_step": sum(steady) / len(steady),
                "peak_mb": record["peak_memory_mb"],
                "start_mb": record["start_memory_mb"],
                "trainable": record["optimized_parameters"],
                "steps": record["steps"],
            }
        )
    )


def add_shape_arguments(parser: argparse.ArgumentParser, **defaults) -> None:
    """The model shape and step set-up flags shared with gpu_step.py (which defaults them to Llama-2-7B)."""
    shape = {
        "hidden": 512,
        "intermediate": 1376,
        "layers": 4,
        "heads": 8,
        "vocab": 32000,
        "seq": 256,
        "accum": 4,
        "steps": 3,
        **defaults,
    }
    for name, value in shape.items():
        parser.add_argument(f"--{name}", type=int, default=value)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (as for 7B runs)")
    parser.add_argument("--dtype", default="float32", help="model dtype: float32, or bfloat16 on a GPU")
    parser.add_argument("--work", help="(internal) prepared work directory")
    parser.add_argument("--worker", help="(internal) run one method and print its JSON line")


def measure(args, methods: list[str], script: str = __file__) -> dict[str, dict]:
    """Prepare once, then run each method in its own fresh process (peak memory is per process)."""
    work = Path(tempfile.mkdtemp(prefix="knowundo-step-"))
    prepare(work, args)
    passthrough = [
        f"--{k}={getattr(args, k)}"
        for k in ("hidden", "intermediate", "layers", "heads", "vocab", "seq", "accum", "steps", "dtype")
    ]
    passthrough += ["--checkpointing"] if args.checkpointing else []
    results = {}
    for method in methods:
        out = subprocess.run(
            [sys.executable, script, "--work", str(work), "--worker", method, *passthrough],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results[method] = json.loads(out.strip().splitlines()[-1])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shape_arguments(parser)
    parser.add_argument("--methods", help="comma-separated (default: every registered method)")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.worker:
        worker(Path(args.work), args.worker, args)
        return
    from knowundo.methods import method_names

    results = measure(args, args.methods.split(",") if args.methods else method_names())
    print(
        f"model: hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}; batch 1 x {args.accum} x "
        f"{args.seq} tokens; {args.steps} steps per method; gradient checkpointing {args.checkpointing}; "
        f"memory while training (RSS on CPU, allocated on GPU)"
    )
    print(f"{'method':13} {'s/step':>8} {'x ga':>6} {'peak MB':>9} {'x ga':>6} {'+MB in train':>12} {'trainable':>10}")
    ga = results.get("ga")
    for method, r in results.items():
        t_ratio = r["seconds_per_step"] / ga["seconds_per_step"] if ga else float("nan")
        m_ratio = r["peak_mb"] / ga["peak_mb"] if ga else float("nan")
        print(
            f"{method:13} {r['seconds_per_step']:8.3f} {t_ratio:6.2f} {r['peak_mb']:9.0f} {m_ratio:6.2f} "
            f"{r['peak_mb'] - r['start_mb']:12.0f} {r['trainable']:10d}"
        )
    if ga:
        from knowundo.methods import get_method, trained_sides

        two_sided = [m for m in results if get_method(m).retain]
        over = [m for m in two_sided if results[m]["peak_mb"] / ga["peak_mb"] > 1.1]
        print(
            "two-sided methods, peak memory / ga: "
            + ", ".join(f"{m} {results[m]['peak_mb'] / ga['peak_mb']:.3f}" for m in two_sided)
            + f" (target <= 1.1: {'all met' if not over else 'over: ' + ', '.join(over)})"
        )
        for m in (m for m in two_sided if "alternative" in trained_sides(get_method(m))):
            print(
                f"  {m} trains two answers per forget question (one backward pass for both): its forget side alone "
                f"holds twice GA's activations"
            )
    if "memflex" in results and "ga_gd" in results:
        mf, gd = results["memflex"], results["ga_gd"]
        print(
            f"memflex vs ga_gd: time per step {100 * (mf['seconds_per_step'] / gd['seconds_per_step'] - 1):+.1f}%, "
            f"peak memory {100 * (mf['peak_mb'] / gd['peak_mb'] - 1):+.1f}% (paper: -11.76% time)"
        )


if __name__ == "__main__":
    main()
