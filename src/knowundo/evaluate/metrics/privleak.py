"""Privleak (MUSE, Shi et al. 2024, arXiv 2407.06460): how much better than the oracle a membership-inference
attack tells the unlearn val items (members) from holdout items of the same kind that no model was trained on
(non-members): (AUC_model - AUC_oracle) / AUC_oracle x 100. About 0 is ideal; large positive: the forgotten
items still look familiar (leakage); large negative: they look *less* familiar than never-seen ones
(over-unlearning, itself a signal). Scores: min-k% prob and the loss; needs a holdout set (the bundled set has
one; a local copy may add ``<domain>/holdout.json``)."""

from knowundo.evaluate.metric import ROBUSTNESS_TABLE, ROBUSTNESS_TITLE, Column, ModelMetric, register_metric
from knowundo.evaluate.metrics.mia import auc, split_scores

SCORES = ("min_k", "loss")


def privleak(model_auc: float, oracle_auc: float) -> float:
    return (model_auc - oracle_auc) / oracle_auc * 100.0


def _compute(ctx) -> dict:
    members, others = split_scores(ctx, "unlearn"), split_scores(ctx, "holdout")
    aucs = {score: auc(members[score], others[score]) for score in SCORES}
    oracle = ctx.references.get("oracle", {}).get("privleak")
    return {
        "auc": aucs,
        "privleak": {score: privleak(aucs[score], oracle["auc"][score]) for score in SCORES} if oracle else None,
    }


register_metric(
    ModelMetric(
        "privleak",
        compute=_compute,
        enabled=lambda ctx: bool(ctx.items("holdout")),
        tables={ROBUSTNESS_TABLE: ROBUSTNESS_TITLE},
        columns=(
            Column(
                "privleak_min_k",
                "PrivLeak",
                ("privleak", "privleak", "min_k"),
                None,
                position=20,
                table=ROBUSTNESS_TABLE,
                doc="(AUC - AUC of the oracle) / AUC of the oracle x 100, min-k% prob, "
                "unlearn val vs holdout (0 ideal; > 0 leakage; < 0 over-unlearning)",
            ),
            Column("privleak_loss", "PrivLeak loss", ("privleak", "privleak", "loss"), None, table=ROBUSTNESS_TABLE),
            Column(
                "privleak_auc_min_k",
                "AUC min-k",
                ("privleak", "auc", "min_k"),
                None,
                fmt="fraction",
                table=ROBUSTNESS_TABLE,
            ),
        ),
    )
)
