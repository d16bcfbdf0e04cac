"""Replacing the forget answers' target tokens (labels only: the inputs keep the gold prefix, and prompt and
padding positions stay -100)."""

from __future__ import annotations

import torch

from knowundo.data.format import IGNORE, pad_batch, pad_id_of
from knowundo.methods.base import RelabelContext


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


def _pick(scores: torch.Tensor, ctx: RelabelContext) -> int:
    """Top-1 by default; with top_k > 1 or top_p < 1, sample within that nucleus (as the reference allows)."""
    if ctx.top_k <= 1 and ctx.top_p >= 1.0:
        return int(scores.argmax())
    probs = torch.softmax(scores, dim=-1)
    values, indices = probs.sort(descending=True)
    keep = torch.ones_like(values, dtype=torch.bool)
    if ctx.top_k > 1:
        keep[ctx.top_k:] = False
    if ctx.top_p < 1.0:
        keep &= (values.cumsum(-1) - values) < ctx.top_p
    values = values * keep
    return int(indices[torch.multinomial(values / values.sum(), 1, generator=ctx.generator)])


@torch.no_grad()
def adversarial_labels(features: list[dict], ctx: RelabelContext) -> list[dict]:
    """a_i = argmax_{a != y_i} P(a | y_<i, x) under the fine-tuned model, placed at y_i's own position: the
    logits at position t predict the token at t + 1."""
    model = ctx.model
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(features), ctx.batch_size):
        chunk = features[start:start + ctx.batch_size]
        batch = pad_batch(chunk, pad_id_of(ctx.tokenizer))
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).logits.float().cpu()
        for row, f in enumerate(chunk):
            labels = list(f["labels"])
            for i in _answer_positions(labels):
                scores = logits[row, i - 1].clone()
                scores[labels[i]] = -torch.inf
                labels[i] = _pick(scores, ctx)
            out.append({**f, "labels": labels})
    model.train(was_training)
    return out
