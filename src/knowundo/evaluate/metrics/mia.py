"""Membership inference on the unlearn scope: can a loss-based attack still tell the items to forget from
items the model was never asked to forget? Scores are oriented so that higher means "looks like a member"."""

from __future__ import annotations

import zlib

from knowundo.evaluate.metric import Column, ModelMetric, register_metric

SCORES = ("loss", "zlib", "min_k")
COMPARISONS = ("retention", "general")  # non-members: retention val, general held-out


def membership_scores(per_item: list[dict], answers: list[str]) -> dict[str, list[float]]:
    """loss: mean answer log-prob; zlib: summed log-prob over the zlib-compressed size of the answer text
    (discounts answers that are easy because they are repetitive); min_k: mean of the lowest k% token
    log-probs (from the teacher-forced pass)."""
    return {
        "loss": [s["mean_logprob"] for s in per_item],
        "zlib": [s["logprob"] / len(zlib.compress(a.encode("utf-8"))) for s, a in zip(per_item, answers)],
        "min_k": [s["min_k_logprob"] for s in per_item],
    }


def auc(members: list[float], others: list[float]) -> float:
    """ROC AUC of separating ``members`` (positives) from ``others``: 0.5 = indistinguishable; well below 0.5
    after unlearning means the forgotten items now look *less* familiar than comparable unseen ones."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score([1] * len(members) + [0] * len(others), members + others))


def membership_inference(unlearn: dict[str, list[float]], comparisons: dict[str, dict[str, list[float]]]) -> dict:
    """AUC per score, unlearn val against each comparison set (e.g. retention val, general held-out)."""
    return {score: {name: auc(unlearn[score], other[score]) for name, other in comparisons.items()} for score in SCORES}


def split_scores(ctx, split: str) -> dict[str, list[float]]:
    """The scores of one split, without any system prompt, from the teacher-forced pass the other metrics share."""
    items, records = ctx.items(split), ctx.teacher_forced(split)["per_item"]
    return membership_scores(records, [items[r["index"]]["labels"] for r in records])


def _compute(ctx) -> dict:
    scores = {name: split_scores(ctx, name) for name in ("unlearn", *COMPARISONS)}
    return membership_inference(scores["unlearn"], {name: scores[name] for name in COMPARISONS})


register_metric(
    ModelMetric(
        "mia",
        compute=_compute,
        tables={
            "mia": "Membership inference (AUC, unlearn val vs retention val and vs general held-out; 0.5 = no signal)"
        },
        columns=tuple(
            Column(
                f"mia_{score}_{other}",
                f"{score} vs {other}",
                ("mia", score, other),
                None,
                fmt="fraction",
                position=10 * i + j,
                table="mia",
                doc=f"AUC of the {score} score, unlearn val vs {other}",
            )
            for i, score in enumerate(SCORES)
            for j, other in enumerate(COMPARISONS)
        ),
    )
)
