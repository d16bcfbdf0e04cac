"""General ability against the base model, question by question: did a row lose it, or is the difference noise?"""

from __future__ import annotations

from scipy.stats import binomtest, wilcoxon

from knowundo.layout import BASE_LABEL

EXPLANATION = (
    "A small task moves in large steps ({steps}), so a difference in "
    "points alone cannot tell a loss from chance. Each row is compared with the base model (before fine-tuning) of "
    "its domain on the same questions, so a difference adds up the fine-tune's effect and the unlearning's (the "
    "`vanilla` row: the fine-tune's alone). Held-out general set: per-item token accuracies, Wilcoxon signed-rank "
    "test (`scipy.stats.wilcoxon`). Each lm-eval task with 0 / 1 accuracy per question (a group over its "
    "subtasks): the questions lost and gained, exact McNemar test (a two-sided binomial test of the discordant "
    "questions at 1/2, `scipy.stats.binomtest`). A small p: unlikely to be chance; a large one: these questions "
    "cannot tell. The p-values are not corrected for the number of rows compared: among 20 rows with no real "
    "change, one p below 0.05 is expected. '-': the result holds no per-question scores for it (a task without "
    "0 / 1 accuracy, another set of questions than the base's, or a result written before they were kept)."
)


def mcnemar(base: list[int], other: list[int]) -> dict:
    """Questions the other model lost (right under the base, wrong under it) and gained, and the exact two-sided
    McNemar p-value (1.0 when none changed)."""
    lost = sum(1 for b, o in zip(base, other) if b and not o)
    gained = sum(1 for b, o in zip(base, other) if o and not b)
    p = binomtest(lost, lost + gained, 0.5).pvalue if lost + gained else 1.0
    return {"lost": lost, "gained": gained, "p": float(p)}


def signed_rank(base: list[float], other: list[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired per-item scores (1.0 when no item changed)."""
    if all(b == o for b, o in zip(base, other)):
        return 1.0
    return float(wilcoxon(other, base, zero_method="zsplit").pvalue)


def general_changes(results: list[dict]) -> list[dict]:
    """One row per result that has a base result in its domain (not the base itself): held-out general accuracy
    and each lm-eval task's accuracy, their change against the base, and the paired tests."""
    bases = {r["domain"]: r for r in results if r["label"] == BASE_LABEL}
    rows = []
    for result in results:
        base = bases.get(result["domain"])
        if base is None or result is base:
            continue
        row = {"domain": result["domain"], "label": result["label"]}
        items, base_items = result.get("general", {}).get("per_item"), base.get("general", {}).get("per_item")
        if items and base_items and [i["text"] for i in items] == [i["text"] for i in base_items]:
            row.update(
                general=result["general"]["accuracy"],
                general_change=result["general"]["accuracy"] - base["general"]["accuracy"],
                general_p=signed_rank([i["accuracy"] for i in base_items], [i["accuracy"] for i in items]),
            )
        for task, scores in result.get("lm_eval", {}).items():
            base_scores = base.get("lm_eval", {}).get(task, {})
            if "questions" in scores and scores["questions"] == base_scores.get("questions"):  # with "correct"
                tested = mcnemar(base_scores["correct"], scores["correct"])
                row.update(
                    {
                        task: scores["acc"],
                        f"{task}_change": scores["acc"] - base_scores["acc"],
                        **{f"{task}_{key}": value for key, value in tested.items()},
                        f"{task}_questions": len(base_scores["correct"]),
                    }
                )
        rows.append(row)
    return rows
