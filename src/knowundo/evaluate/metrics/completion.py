"""Generations that say nothing or were cut: the share of empty generations (nothing before EOS) and of
generations cut at ``eval.max_new_tokens`` (no EOS), with their counts in the result file."""

from knowundo.evaluate.metric import Column, SplitMetric, register_metric
from knowundo.evaluate.metrics.fluency import TABLE


def _reduce(records: list[dict], scope: str) -> dict:
    empty = sum(not r["generation"] for r in records)
    cut = sum(r["hit_limit"] for r in records)
    return {
        "empty": empty,
        "empty_rate": 100.0 * empty / len(records),
        "hit_token_limit": cut,
        "cut_rate": 100.0 * cut / len(records),
    }


def _columns(scope: str, short: str, offset: int) -> tuple[Column, ...]:
    return (
        Column(
            f"{scope}_empty_rate",
            f"{short} empty",
            (scope, "empty_rate"),
            False,
            position=40 + offset,
            table=TABLE,
            doc=f"% of {scope} generations with nothing before EOS",
        ),
        Column(
            f"{scope}_cut_rate",
            f"{short} cut",
            (scope, "cut_rate"),
            False,
            position=42 + offset,
            table=TABLE,
            doc=f"% of {scope} generations cut at eval.max_new_tokens",
        ),
    )


register_metric(
    SplitMetric(
        "completion",
        needs=frozenset({"generation"}),
        reduce=_reduce,
        enabled=lambda eval_cfg: eval_cfg.generate,
        columns=(*_columns("unlearn", "UL", 0), *_columns("retention", "RT", 1)),
    )
)
