"""Perplexity of the gold answers: exp(−mean over items of the mean answer-token log-probability). Gradient
ascent diverges by design: an overflow is stored as inf and printed ">1e10"."""

from knowundo.evaluate.metric import Column, SplitMetric, register_metric
from knowundo.evaluate.teacher_forced import perplexity

register_metric(
    SplitMetric(
        "perplexity",
        reduce=lambda records, scope: {"ppl": perplexity(records)},
        columns=(
            Column(
                "unlearn_ppl",
                "UL PPL",
                ("unlearn", "ppl"),
                True,
                fmt="ppl",
                position=110,
                doc="perplexity of the unlearn val answers",
            ),
            Column(
                "retention_ppl",
                "RT PPL",
                ("retention", "ppl"),
                False,
                fmt="ppl",
                position=210,
                doc="perplexity of the retention val answers",
            ),
        ),
    )
)
