"""Paraphrase probes (RWKU's idea: ask the same knowledge other ways) and TOFU's truth ratio (Maini et al. 2024,
arXiv 2401.06121). Token accuracy on one phrasing can be gamed; these ask each val item again with paraphrased
questions, and compare how likely the model finds a paraphrased true answer against wrong answers of the same
shape. Needs the items' probe fields (the bundled set has them); data without them shows "-"."""

from knowundo.evaluate.metric import ROBUSTNESS_TABLE, ROBUSTNESS_TITLE, Column, ModelMetric, register_metric
from knowundo.layout import SCOPES


def truth_score(ratio: float) -> float:
    """max(0, 1 - R): how strongly the true answer is preferred over the wrong ones (0: not at all)."""
    return max(0.0, 1.0 - ratio)


def _scope(ctx, scope: str) -> dict:
    records = [r for r in ctx.probes(scope) if r["truth_ratio"] is not None]
    if not records:
        return {"items": 0, "success": None, "truth": None}
    accuracies = [r["paraphrase_accuracy"] for r in records if r["paraphrase_accuracy"] is not None]
    accuracy = sum(accuracies) / len(accuracies) if accuracies else None
    success = None if accuracy is None else (100.0 - accuracy if scope == "unlearn" else accuracy)
    return {
        "items": len(records),
        "success": success,
        "truth": sum(truth_score(r["truth_ratio"]) for r in records) / len(records),
    }


register_metric(
    ModelMetric(
        "paraphrase",
        compute=lambda ctx: {scope: _scope(ctx, scope) for scope in SCOPES},
        enabled=lambda ctx: ctx.cfg.attack.paraphrase,
        tables={ROBUSTNESS_TABLE: ROBUSTNESS_TITLE},
        columns=(
            Column(
                "paraphrase_unlearn_success",
                "Para UL",
                ("paraphrase", "unlearn", "success"),
                True,
                position=90,
                table=ROBUSTNESS_TABLE,
                doc="Unlearn Success on the unlearn val questions asked in other words",
            ),
            Column(
                "paraphrase_retention_success",
                "Para RT",
                ("paraphrase", "retention", "success"),
                True,
                position=91,
                table=ROBUSTNESS_TABLE,
                doc="Retention Success on paraphrased retention questions",
            ),
            Column(
                "truth_unlearn",
                "Truth UL",
                ("paraphrase", "unlearn", "truth"),
                None,
                fmt="fraction",
                position=95,
                table=ROBUSTNESS_TABLE,
                doc="mean max(0, 1 - truth ratio) on unlearn val: preference for the true answer over perturbed "
                "ones (compare with the oracle's)",
            ),
            Column(
                "truth_retention",
                "Truth RT",
                ("paraphrase", "retention", "truth"),
                True,
                fmt="fraction",
                position=96,
                table=ROBUSTNESS_TABLE,
                doc="the same on retention val (higher: knowledge kept)",
            ),
        ),
    )
)
