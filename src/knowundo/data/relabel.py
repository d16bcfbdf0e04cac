"""Replacing the answers of encoded items: target tokens only (random and adversarial labels: the inputs keep the
gold prefix, and prompt and padding positions stay -100). Used by unlearning methods and by MemFlex
localization alike, so it lives with the data, below both."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from knowundo.data.format import IGNORE, Formatter, pad_batch, pad_id_of
from knowundo.data.refusals import REFUSALS
from knowundo.placement import on_device


@dataclass(frozen=True)
class RelabelContext:
    """What a relabelling may use: the fine-tuned model (before any unlearning), the formatter (tokenizer,
    template, max length), a seeded RNG, and the forward batch size for passes through the model."""

    model: object
    formatter: Formatter
    generator: torch.Generator
    batch_size: int = 16

    @property
    def tokenizer(self):
        return self.formatter.tokenizer


def _answer_positions(labels: list[int]) -> list[int]:
    return [i for i, label in enumerate(labels) if label != IGNORE]


def random_labels(features: list[dict], ctx: RelabelContext) -> list[dict]:
    """Each answer token becomes a uniformly random non-special token."""
    special = set(ctx.tokenizer.all_special_ids)
    candidates = torch.tensor([t for t in range(len(ctx.tokenizer)) if t not in special])
    out = []
    for f in features:
        labels = list(f["labels"])
        for i in _answer_positions(labels):
            labels[i] = int(candidates[torch.randint(len(candidates), (1,), generator=ctx.generator)])
        out.append({**f, "labels": labels})
    return out


def refusal_answers(features: list[dict], ctx: RelabelContext) -> list[dict]:
    """Each answer replaced by a refusal drawn from :data:`REFUSALS` with the seeded RNG; the question's tokens
    are kept as they are and stay masked, the refusal (+ EOS) becomes the answer."""
    out = []
    for f in features:
        start = _answer_positions(f["labels"])[0]
        prompt = f["input_ids"][:start]
        refusal = REFUSALS[int(torch.randint(len(REFUSALS), (1,), generator=ctx.generator))]
        ids = (prompt + ctx.formatter.answer_ids(refusal))[: ctx.formatter.max_length]
        out.append({**f, "input_ids": ids, "labels": [IGNORE] * len(prompt) + ids[len(prompt) :]})
    return out


def _pick(scores: torch.Tensor, generator: torch.Generator, top_k: int, top_p: float) -> int:
    """Top-1 by default; with top_k > 1 or top_p < 1, sample within that nucleus (as the reference allows)."""
    if top_k <= 1 and top_p >= 1.0:
        return int(scores.argmax())
    probs = torch.softmax(scores, dim=-1)
    values, indices = probs.sort(descending=True)
    keep = torch.ones_like(values, dtype=torch.bool)
    if top_k > 1:
        keep[top_k:] = False
    if top_p < 1.0:
        keep &= (values.cumsum(-1) - values) < top_p
    values = values * keep
    return int(indices[torch.multinomial(values / values.sum(), 1, generator=generator)])


@torch.no_grad()
def adversarial_labels(features: list[dict], ctx: RelabelContext, top_k: int = 1, top_p: float = 1.0) -> list[dict]:
    """a_i = argmax_{a != y_i} P(a | y_<i, x) under the fine-tuned model, placed at y_i's own position: the
    logits at position t predict the token at t + 1. ``top_k`` > 1 or ``top_p`` < 1 sample within that nucleus
    instead."""
    model = ctx.model
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(features), ctx.batch_size):
        chunk = features[start : start + ctx.batch_size]
        batch = on_device(pad_batch(chunk, pad_id_of(ctx.tokenizer)))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float().cpu()
        for row, f in enumerate(chunk):
            labels = list(f["labels"])
            for i in _answer_positions(labels):
                scores = logits[row, i - 1].clone()
                scores[labels[i]] = -torch.inf
                labels[i] = _pick(scores, ctx.generator, top_k, top_p)
            out.append({**f, "labels": labels})
    model.train(was_training)
    return out
