"""Unlearn / Retention Success (the paper's headline): token accuracy of the teacher-forced answers on the val
splits. Unlearn Success = 100 − accuracy on the unlearn scope, Retention Success = accuracy on the retention
scope, Avg Success = their mean. Beside it, whole-answer exact match (every answer token right)."""

from knowundo.evaluate.metric import Column, SplitMetric, register_metric
from knowundo.evaluate.teacher_forced import aggregate


def _reduce(records: list[dict], scope: str) -> dict:
    totals = aggregate(records)
    accuracy = totals["accuracy"]
    return {
        "accuracy": accuracy,
        "success": 100.0 - accuracy if scope == "unlearn" else accuracy,
        "exact_match": totals["exact_match"],
    }


def _summary(variant: dict) -> dict:
    unlearn, retention = variant["unlearn"]["success"], variant["retention"]["success"]
    return {"unlearn_success": unlearn, "retention_success": retention, "avg_success": (unlearn + retention) / 2}


register_metric(
    SplitMetric(
        "success",
        reduce=_reduce,
        summary=_summary,
        columns=(
            Column(
                "unlearn_success",
                "UL Succ",
                ("unlearn", "success"),
                True,
                position=100,
                breakdown=True,
                doc="Unlearn Success: 100 - token accuracy on the unlearn val split",
            ),
            Column(
                "retention_success",
                "RT Succ",
                ("retention", "success"),
                True,
                position=200,
                breakdown=True,
                doc="Retention Success: token accuracy on the retention val split",
            ),
            Column("avg_success", "Avg Succ", ("avg_success",), True, position=300, doc="mean of UL and RT Succ"),
            Column(
                "unlearn_exact_match",
                "UL exact",
                ("unlearn", "exact_match"),
                False,
                doc="% of unlearn answers reproduced token for token",
            ),
            Column(
                "retention_exact_match",
                "RT exact",
                ("retention", "exact_match"),
                True,
                doc="% of retention answers reproduced token for token",
            ),
        ),
    )
)
