"""``model.dtype: auto`` on a CPU with bfloat16 instructions (``knowundo.placement.supports_bf16``): the preset's
model in float32 against bfloat16, side by side on one batch — a LoRA training step (forward + backward under the
Trainer's bfloat16 autocast), a teacher-forced scoring pass (float32 log-probabilities either way) and a greedy
generation pass — with the losses and the generations compared. Run: ``python benchmarks/cpu_bf16.py [--preset
smollm2]``."""

from __future__ import annotations

import argparse

import torch
from answer_window import _timed

from knowundo.config import load_config
from knowundo.data.format import encode_items, pad_batch, pad_id_of
from knowundo.evaluate.generation import generate_answers
from knowundo.logits import forward_on_answers, per_sample_nll
from knowundo.models.load import load_base, prepare_base, trainable_adapter
from knowundo.placement import supports_bf16
from knowundo.stage import Stage


def measure(preset: str, dtype: str, repeats: int) -> dict:
    cfg = load_config(preset, overrides=[f"model.dtype={dtype}"])
    prepare_base(cfg, progress=False)
    model, tokenizer = load_base(cfg)
    torch.manual_seed(cfg.seed)
    model = trainable_adapter(model, None, cfg)
    stage = Stage("finetune", cfg, "privacy")
    formatter = stage.formatter(tokenizer)
    items = stage.data["unlearn"]["train"][: cfg.finetune.batch_size]
    batch = pad_batch(encode_items(items, formatter).features, pad_id_of(tokenizer))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16")

    def loss() -> torch.Tensor:
        with autocast:
            outputs, labels, _ = forward_on_answers(model, batch)
        return per_sample_nll(outputs.logits, labels).mean()

    def train_step():
        model.zero_grad(set_to_none=True)
        value = loss()
        value.backward()
        return float(value.detach())

    @torch.no_grad()
    def score():
        return float(loss())

    def generate():
        return [g["generation"] for g in generate_answers(model, formatter, items, len(items), 32)]

    step, train_loss = _timed(train_step, repeats)
    scoring, score_loss = _timed(score, repeats)
    generation, texts = _timed(generate, 1)
    shape = tuple(batch["input_ids"].shape)
    return {
        "shape": shape,
        "train": step,
        "score": scoring,
        "generate": generation,
        "loss": score_loss,
        "train_loss": train_loss,
        "texts": texts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="smollm2")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.preset}: {torch.get_num_threads()} threads, bfloat16 native on this CPU: {supports_bf16()}")
    f32, bf16 = (measure(args.preset, dtype, args.repeats) for dtype in ("float32", "bfloat16"))
    print(f"batch {f32['shape']}")
    for name, what in (("training step", "train"), ("scoring pass", "score"), ("generation (32 tokens)", "generate")):
        print(f"{name}: float32 {f32[what]:.2f}s, bfloat16 {bf16[what]:.2f}s = {bf16[what] / f32[what]:.2f}x")
    same = sum(a == b for a, b in zip(f32["texts"], bf16["texts"]))
    print(f"scoring loss {f32['loss']:.4f} vs {bf16['loss']:.4f}; generations identical {same} of {len(f32['texts'])}")


if __name__ == "__main__":
    main()
