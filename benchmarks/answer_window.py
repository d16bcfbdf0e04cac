"""The LM head over the answer window only (``knowundo.logits.forward_on_answers``) against the whole sequence, side
by side on one batch: a LoRA training step (forward + backward, the preset's LoRA placement) and a teacher-forced
scoring pass, with the losses compared. Run: ``python benchmarks/answer_window.py [--preset smollm2]``."""

from __future__ import annotations

import argparse
import time

import torch

from knowundo.config import load_config
from knowundo.data.format import encode_items, pad_batch, pad_id_of
from knowundo.logits import forward_on_answers, per_sample_nll
from knowundo.models.load import load_base, prepare_base, trainable_adapter
from knowundo.stage import Stage


def _timed(step, repeats: int) -> tuple[float, float]:
    step()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        value = step()
    return (time.perf_counter() - started) / repeats, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="smollm2")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = load_config(args.preset)
    prepare_base(cfg, progress=False)
    model, tokenizer = load_base(cfg)
    model = trainable_adapter(model, None, cfg)
    stage = Stage("finetune", cfg, "privacy")
    features = encode_items(stage.data["unlearn"]["train"][: cfg.finetune.batch_size], stage.formatter(tokenizer))
    batch = pad_batch(features.features, pad_id_of(tokenizer))

    def loss(window: bool) -> torch.Tensor:
        if window:
            outputs, labels, _ = forward_on_answers(model, batch)
        else:
            outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            labels = batch["labels"]
        return per_sample_nll(outputs.logits, labels).mean()

    def train_step(window: bool):
        def step():
            model.zero_grad(set_to_none=True)
            value = loss(window)
            value.backward()
            return float(value.detach())

        return step

    def score(window: bool):
        @torch.no_grad()
        def step():
            return float(loss(window))

        return step

    answer = (batch["labels"] != -100).sum().item()
    print(
        f"{args.preset}: batch {tuple(batch['input_ids'].shape)}, {answer} answer tokens, "
        f"{torch.get_num_threads()} threads"
    )
    for name, make in (("training step", train_step), ("scoring pass", score)):
        whole, loss_whole = _timed(make(False), args.repeats)
        window, loss_window = _timed(make(True), args.repeats)
        print(
            f"{name}: whole sequence {whole:.2f}s, answer window {window:.2f}s = {window / whole:.2f}x "
            f"(loss {loss_whole:.6f} vs {loss_window:.6f})"
        )


if __name__ == "__main__":
    main()
