"""Teacher-forced metrics over answer tokens, computed in float32 whatever dtype the model runs in."""

from __future__ import annotations

import math

import torch

from knowundo.data.format import IGNORE, Formatter, encode_items, pad_batch, pad_id_of
from knowundo.logits import forward_on_answers, gold_logprobs
from knowundo.placement import on_device


def answer_token_stats(logits: torch.Tensor, labels: torch.Tensor, min_k: float = 0.2) -> dict[str, torch.Tensor]:
    """Per item: answer-token count, correct argmax count, summed gold log-probability, and the mean of the
    lowest ``min_k`` share of the token log-probabilities (min-k% prob, a membership score). Only the answer
    positions are taken to float32 and normalised over the vocabulary (a question's positions are most of a
    sequence, and a real model's vocabulary is wide)."""
    targets = labels[:, 1:]
    mask = targets != IGNORE
    answer = logits[:, :-1][mask].float()
    gold = targets[mask]
    logprob = torch.zeros(mask.shape, device=logits.device).masked_scatter(mask, gold_logprobs(answer, gold))
    correct = torch.zeros_like(mask).masked_scatter(mask, answer.argmax(-1) == gold)
    tokens = mask.sum(-1)
    lowest = logprob.masked_fill(~mask, math.inf).sort(-1).values
    k = (tokens.float() * min_k).ceil().clamp(min=1).long()
    in_lowest = torch.arange(lowest.shape[-1], device=lowest.device)[None, :] < k[:, None]
    min_k_mean = (lowest.masked_fill(~in_lowest, 0.0)).sum(-1) / k
    return {"tokens": tokens, "correct": correct.sum(-1), "logprob": logprob.sum(-1), "min_k_logprob": min_k_mean}


@torch.no_grad()
def score_features(model, features: list[dict], pad_id: int, batch_size: int, min_k: float = 0.2) -> list[dict]:
    """Per-item accuracy, mean log-prob and exact match, batched over length-sorted items (less padding)."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    scores: list[dict | None] = [None] * len(features)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = on_device(pad_batch([features[i] for i in chunk], pad_id))
        outputs, labels, _ = forward_on_answers(model, batch)
        stats = {k: v.tolist() for k, v in answer_token_stats(outputs.logits, labels, min_k).items()}
        for row, index in enumerate(chunk):
            tokens, correct = stats["tokens"][row], stats["correct"][row]
            scores[index] = {
                "accuracy": 100.0 * correct / tokens,
                "mean_logprob": stats["logprob"][row] / tokens,
                "logprob": stats["logprob"][row],
                "min_k_logprob": stats["min_k_logprob"][row],
                "exact_match": correct == tokens,
                "answer_tokens": tokens,
            }
    model.train(was_training)
    return scores


def perplexity(scores: list[dict]) -> float:
    """exp(-mean over items of the mean answer log-prob); gradient ascent diverges by design: inf, no crash."""
    mean_logprob = sum(s["mean_logprob"] for s in scores) / len(scores)
    try:
        return math.exp(-mean_logprob)
    except OverflowError:
        return math.inf


def aggregate(scores: list[dict]) -> dict:
    """Item-averaged accuracy and exact match, and the perplexity."""
    n = len(scores)
    return {
        "items": n,
        "accuracy": sum(s["accuracy"] for s in scores) / n,
        "ppl": perplexity(scores),
        "exact_match": 100.0 * sum(s["exact_match"] for s in scores) / n,
    }


def evaluate_items(model, formatter: Formatter, items: list[dict], batch_size: int, min_k: float = 0.2) -> dict:
    """Aggregates plus one record per item (question, gold answer, category, instance, scores) for later
    breakdowns and for reading."""
    encoded = encode_items(items, formatter)
    scores = score_features(model, encoded.features, pad_id_of(formatter.tokenizer), batch_size, min_k)
    per_item = [
        {
            "index": index,
            "text": items[index]["text"],
            "answer": items[index]["labels"],
            "category": items[index].get("category"),
            "instance": items[index].get("instance"),
            **s,
        }
        for index, s in zip(encoded.kept, scores)
    ]
    return {**aggregate(scores), "truncated": encoded.truncated, "dropped": encoded.dropped, "per_item": per_item}
