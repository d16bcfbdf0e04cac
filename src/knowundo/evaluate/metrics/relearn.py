"""After the relearning attack (:mod:`knowundo.attacks.relearn`): Unlearn Success on the unlearn val split of
the relearned adapter (swapped in beside the evaluated one), and the share of the vanilla-to-unlearned gap that
came back, 100 x (UL - UL after) / (UL - UL of vanilla): 0 = nothing came back, 100 = back to the fine-tuned
model. Shown only for models that were attacked (unlearned rows of `knowundo run`)."""

from knowundo.evaluate.metric import ROBUSTNESS_TABLE, ROBUSTNESS_TITLE, Column, ModelMetric, register_metric, value_at
from knowundo.layout import relearned_adapter

MIN_GAP = 1.0  # points of Unlearn Success below which "share of the gap" is not defined


def recovered_share(before: float, after: float, vanilla: float | None) -> float | None:
    if vanilla is None or before - vanilla < MIN_GAP:
        return None
    return 100.0 * (before - after) / (before - vanilla)


def _compute(ctx) -> dict:
    before = 100.0 - ctx.robustness_accuracy("unlearn")
    with ctx.swapped_checkpoint(relearned_adapter(ctx.adapter)):
        after = 100.0 - ctx.score(ctx.robustness_items("unlearn"))["accuracy"]
    vanilla = value_at(ctx.references.get("vanilla", {}), ("prompts", "none", "unlearn", "success"))
    return {
        "unlearn_success": after,
        "unlearn_success_before": before,
        "recovered": recovered_share(before, after, vanilla),
    }


register_metric(
    ModelMetric(
        "relearn",
        compute=_compute,
        tables={ROBUSTNESS_TABLE: ROBUSTNESS_TITLE},
        enabled=lambda ctx: (
            ctx.cfg.attack.relearn and ctx.adapter is not None and relearned_adapter(ctx.adapter).is_dir()
        ),
        columns=(
            Column(
                "relearn_unlearn_success",
                "UL relearn",
                ("relearn", "unlearn_success"),
                True,
                position=30,
                table=ROBUSTNESS_TABLE,
                doc="Unlearn Success after the relearning attack",
            ),
            Column(
                "relearn_recovered",
                "Recovered %",
                ("relearn", "recovered"),
                False,
                position=31,
                table=ROBUSTNESS_TABLE,
                doc="share of the vanilla-to-unlearned Unlearn Success gap the attack brought back",
            ),
        ),
    )
)
