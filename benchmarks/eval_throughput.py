"""Evaluation throughput on a Llama-2-7B-shaped random model (no download; bf16 on a GPU): teacher-forced scoring
(items/s) and greedy generation (new tokens/s), at the evaluation batch size against batch size 1, through the
same functions `knowundo eval` uses, with the results of both batch sizes compared.

Usage: python benchmarks/eval_throughput.py [--hidden 4096 --layers 32 ...]   (any shape runs on a CPU)
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, value in {
        "hidden": 4096,
        "intermediate": 11008,
        "layers": 32,
        "heads": 32,
        "vocab": 32000,
        "items": 64,
        "prompt": 32,
        "answer": 96,
        "new_tokens": 64,
        "batch": 16,
    }.items():
        parser.add_argument(f"--{name}", type=int, default=value)
    args = parser.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from knowundo.data.format import IGNORE
    from knowundo.evaluate.generation import greedy_generate
    from knowundo.evaluate.teacher_forced import score_features

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    generator = torch.Generator().manual_seed(0)

    def ids(length: int) -> list[int]:
        return torch.randint(3, args.vocab, (length,), generator=generator).tolist()

    prompts = [ids(args.prompt - i % 8) for i in range(args.items)]  # different lengths: padding is exercised
    features = [{"input_ids": p + ids(args.answer), "labels": [IGNORE] * len(p) + ids(args.answer)} for p in prompts]
    tokenizer = type("Tokenizer", (), {"pad_token_id": 0, "eos_token_id": 2})()

    def timed(work):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        result = work()
        if device == "cuda":
            torch.cuda.synchronize()
        return result, time.perf_counter() - started

    print(
        f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}; {dtype}; model: hidden "
        f"{args.hidden}, {args.layers} layers; {args.items} items of {args.prompt} + {args.answer} tokens"
    )
    scores = {}
    for batch in (args.batch, 1):
        score_features(model, features[:2], 0, batch)  # warm-up
        scores[batch], seconds = timed(lambda b=batch: score_features(model, features, 0, b))
        print(f"teacher-forced batch {batch:3d}: {args.items / seconds:8.1f} items/s")
    same = all(abs(a["mean_logprob"] - b["mean_logprob"]) < 2e-2 for a, b in zip(scores[args.batch], scores[1]))
    print(f"  per-item log-probabilities equal across batch sizes (within bf16 tolerance): {same}")
    outputs = {}
    for batch in (args.batch, 1):
        greedy_generate(model, tokenizer, prompts[:2], batch, 4)  # warm-up
        outputs[batch], seconds = timed(lambda b=batch: greedy_generate(model, tokenizer, prompts, b, args.new_tokens))
        tokens = sum(len(o["token_ids"]) for o in outputs[batch])
        print(f"generation batch {batch:3d}: {tokens / seconds:8.1f} new tokens/s")
    agree = sum(a["token_ids"] == b["token_ids"] for a, b in zip(outputs[args.batch], outputs[1]))
    print(f"  generations identical across batch sizes: {agree} of {args.items} (bf16 ties may differ)")


if __name__ == "__main__":
    main()
