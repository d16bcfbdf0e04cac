"""Unlearning on a Llama-2-7B-shaped model: time per optimizer step, peak memory and model FLOP utilisation
(MFU) of `ga`, `ga_kl` and `memflex`, side by side in one run.

The model has random weights built from a config (no download): hidden 4096, 32 layers, 32 heads, MLP 11008,
vocab 32000, LoRA r 8 on every linear layer, batch 1 x accumulation 16 x 256 tokens (the paper's Table 5
set-up), bf16 on a GPU. MFU = model FLOPs of one optimizer step / (time per step x the bf16 matmul rate this
script measures on the same device). Model FLOPs: a forward pass costs F = 2 N + 4 L h s per token (N matmul
parameters, L layers, h hidden, s sequence); a trained sequence costs 2F (forward + input-gradient backward;
the base is frozen, so no weight gradients; LoRA's are negligible), a reference-only forward F. Per step: ga
trains the forget side (2F), memflex forget + retain (4F), ga_kl forget + retain + the reference pass (5F);
every method's count is derived from its declaration (sides trained, sides with reference outputs).
Recomputation under gradient checkpointing is not counted (the usual MFU convention). Target: >= 40% on an H200.

On a CPU it runs any shape in float32 (the test uses a tiny one): python benchmarks/gpu_step.py --hidden 64 ...
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import unlearn_step

LLAMA2_7B = {
    "hidden": 4096,
    "intermediate": 11008,
    "layers": 32,
    "heads": 32,
    "vocab": 32000,
    "seq": 256,
    "accum": 16,
    "steps": 3,
}


def forward_passes(name: str) -> int:
    """Passes of F per token of one side: 2 per trained side (forward + input-gradient backward: forget, its
    alternative answers, retain), 1 per reference forward, from the method's own declaration."""
    from knowundo.methods import get_method, trained_sides

    method = get_method(name)
    referenced = method.reference_sides(method.Params())
    sides = trained_sides(method)
    return 2 * len(sides) + sum(("retain" if side == "retain" else "forget") in referenced for side in sides)


def matmul_rate(device: str, dtype, size: int, repeats: int = 10) -> float:
    """Achieved FLOP/s of a square matmul: the device's practical peak for this dtype."""
    import torch

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def forward_flops_per_token(args) -> float:
    matmul_params = args.layers * (4 * args.hidden**2 + 3 * args.hidden * args.intermediate) + args.hidden * args.vocab
    return 2 * matmul_params + 4 * args.layers * args.hidden * args.seq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    unlearn_step.add_shape_arguments(parser, **LLAMA2_7B)
    parser.add_argument("--methods", default="ga,ga_kl,memflex")
    parser.add_argument("--matmul-size", type=int, default=8192)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.worker:
        unlearn_step.worker(Path(args.work), args.worker, args)
        return
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and args.dtype == "float32":
        args.dtype = "bfloat16"
    peak = matmul_rate(device, getattr(torch, args.dtype), args.matmul_size if device == "cuda" else 512)
    results = unlearn_step.measure(args, args.methods.split(","), script=__file__)
    tokens = args.accum * args.seq  # per side, per optimizer step (batch 1)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(
        f"device: {name}; {args.dtype}; measured matmul rate {peak / 1e12:.2f} TFLOP/s "
        f"({args.matmul_size if device == 'cuda' else 512}^2)"
    )
    print(
        f"model: hidden {args.hidden}, {args.layers} layers, MLP {args.intermediate}, vocab {args.vocab}; batch 1 x "
        f"{args.accum} x {args.seq} tokens; gradient checkpointing {args.checkpointing}"
    )
    print(f"{'method':9} {'s/step':>8} {'peak GB':>8} {'GFLOP/step':>12} {'MFU':>6}")
    for method, r in results.items():
        flops = forward_passes(method) * forward_flops_per_token(args) * tokens
        mfu = flops / r["seconds_per_step"] / peak
        print(
            f"{method:9} {r['seconds_per_step']:8.3f} {r['peak_mb'] / 1024:8.2f} {flops / 1e9:12.4g} {100 * mfu:5.1f}%"
        )
    print("target: MFU >= 40% on an H200 (the paper's runs work out to roughly 10% on an A100)")


if __name__ == "__main__":
    main()
