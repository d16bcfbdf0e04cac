"""The worst case over the adversarial probe families (``attack.probes``): per row, the lowest Unlearn Success any
family leaves (the way of asking that brings the most back), with greedy answers under that family for
``samples.md``. The result also stores the lowest Retention Success, without a column: a family the model could
not answer before unlearning (multiple choice on a model that cannot read letters) would decide it for every row,
so retention is read per family against vanilla's row. The probes table also shows the plain values the families
are read against."""

from knowundo.evaluate.metric import (
    PROBES_TABLE,
    PROBES_TITLE,
    ROBUSTNESS_TABLE,
    ROBUSTNESS_TITLE,
    Column,
    ModelMetric,
    register_metric,
)
from knowundo.evaluate.probing import worst_case


def _compute(ctx) -> dict:
    return worst_case(ctx)


def _worst(table: str, key: str, position: int) -> Column:
    return Column(
        key,
        "Worst probe UL",
        ("probe_worst", "unlearn", "success"),
        True,
        position=position,
        table=table,
        doc="the lowest Unlearn Success over the adversarial probe families (probes.md has each family's)",
    )


register_metric(
    ModelMetric(
        "probe_worst",
        compute=_compute,
        enabled=lambda ctx: bool(ctx.cfg.attack.probes),
        tables={ROBUSTNESS_TABLE: ROBUSTNESS_TITLE, PROBES_TABLE: PROBES_TITLE},
        columns=(
            Column(
                "probes_plain_unlearn_success",
                "UL",
                ("prompts", "none", "unlearn_success"),
                True,
                position=1,
                table=PROBES_TABLE,
                doc="Unlearn / Retention Success on the val questions as the benchmark asks them (no system prompt)",
            ),
            Column(
                "probes_plain_retention_success",
                "RT",
                ("prompts", "none", "retention_success"),
                True,
                position=2,
                table=PROBES_TABLE,
            ),
            _worst(ROBUSTNESS_TABLE, "probe_worst_unlearn_success", 97),
            _worst(PROBES_TABLE, "probes_worst_unlearn_success", 90),
        ),
    )
)
