"""The worst case over the adversarial probe families (``attack.probes``): per row, the lowest Unlearn Success any
family leaves (the way of asking that brings the most back) and the lowest Retention Success (the one that costs
the most of what must stay), with greedy answers under the worst family for ``samples.md``. The probes table
also shows the plain values the families are read against."""

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


def _columns(table: str, prefix: str, position: int) -> tuple[Column, ...]:
    return (
        Column(
            f"{prefix}worst_unlearn_success",
            "Worst probe UL",
            ("probe_worst", "unlearn", "success"),
            True,
            position=position,
            table=table,
            doc="the lowest Unlearn Success over the adversarial probe families (probes.md names each)",
        ),
        Column(
            f"{prefix}worst_retention_success",
            "Worst probe RT",
            ("probe_worst", "retention", "success"),
            True,
            position=position + 1,
            table=table,
            doc="the lowest Retention Success over the adversarial probe families",
        ),
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
            *_columns(ROBUSTNESS_TABLE, "probe_", 97),
            *_columns(PROBES_TABLE, "probes_", 90),
        ),
    )
)
