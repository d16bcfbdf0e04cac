"""Teacher-forced metrics over answer tokens, computed in float32 whatever dtype the model runs in."""

from __future__ import annotations

import math

import torch

from knowundo.data.format import Formatter, encode_items, pad_batch, pad_id_of
from knowundo.logits import gold_logprobs, shifted


def answer_token_stats(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per item: answer-token count, correct argmax count, summed log-probability of the gold tokens."""
    logits, targets, mask = shifted(logits, labels)
    logprob = gold_logprobs(logits, targets) * mask
    correct = (logits.argmax(-1) == targets) & mask
    return {"tokens": mask.sum(-1), "correct": correct.sum(-1), "logprob": logprob.sum(-1)}


@torch.no_grad()
def score_features(model, features: list[dict], pad_id: int, batch_size: int) -> list[dict]:
    """Per-item accuracy, mean log-prob and exact match, batched over length-sorted items (less padding)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    scores: list[dict | None] = [None] * len(features)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = {k: v.to(device) for k, v in pad_batch([features[i] for i in chunk], pad_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        stats = {k: v.tolist() for k, v in answer_token_stats(logits, batch["labels"]).items()}
        for row, index in enumerate(chunk):
            tokens, correct = stats["tokens"][row], stats["correct"][row]
            scores[index] = {"accuracy": 100.0 * correct / tokens, "mean_logprob": stats["logprob"][row] / tokens,
                             "exact_match": correct == tokens, "answer_tokens": tokens}
    model.train(was_training)
    return scores


def aggregate(scores: list[dict]) -> dict:
    """Item-averaged accuracy and exact match; PPL = exp(-mean over items of the mean answer log-prob)."""
    n = len(scores)
    mean_logprob = sum(s["mean_logprob"] for s in scores) / n
    try:
        ppl = math.exp(-mean_logprob)
    except OverflowError:  # gradient ascent diverges by design: report inf, never crash
        ppl = math.inf
    return {"items": n, "accuracy": sum(s["accuracy"] for s in scores) / n, "ppl": ppl,
            "exact_match": 100.0 * sum(s["exact_match"] for s in scores) / n}


def evaluate_items(model, formatter: Formatter, items: list[dict], batch_size: int) -> dict:
    encoded = encode_items(items, formatter)
    scores = score_features(model, encoded.features, pad_id_of(formatter.tokenizer), batch_size)
    per_item = [{"text": item["text"], "category": item.get("category"), "instance": item.get("instance"), **s}
                for item, s in zip((items[i] for i in encoded.kept), scores)]
    return {**aggregate(scores), "truncated": encoded.truncated, "dropped": encoded.dropped, "per_item": per_item}


def evaluate_domain(model, formatter: Formatter, domain_data: dict, batch_size: int, split: str = "val") -> dict:
    """The paper's success metrics on one domain: Unlearn Success = 100 - acc(unlearn), Retention Success =
    acc(retention), Avg Success = their mean."""
    result = {scope: evaluate_items(model, formatter, domain_data[scope][split], batch_size)
              for scope in ("unlearn", "retention")}
    result["unlearn_success"] = 100.0 - result["unlearn"]["accuracy"]
    result["retention_success"] = result["retention"]["accuracy"]
    result["avg_success"] = (result["unlearn_success"] + result["retention_success"]) / 2
    return result
