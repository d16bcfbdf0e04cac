"""Repetition in the generations, over lower-cased words: distinct-n (distinct n-grams / n-grams of a
generation, averaged over generations with at least one n-gram) for n = 1, 2, and the share of generations that
repeat some word 3-gram (degenerate loops: "Kalthi Kalthi Kalthi")."""

import re

from knowundo.evaluate.metric import Column, SplitMetric, register_metric
from knowundo.evaluate.metrics.fluency import TABLE

WORD = re.compile(r"\w+")


def ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = WORD.findall(text.lower())
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct(text: str, n: int) -> float | None:
    grams = ngrams(text, n)
    return len(set(grams)) / len(grams) if grams else None


def repeats_ngram(text: str, n: int = 3) -> bool:
    grams = ngrams(text, n)
    return len(set(grams)) < len(grams)


def _per_item(item: dict, record: dict) -> dict:
    text = record["generation"]
    return {"distinct_1": distinct(text, 1), "distinct_2": distinct(text, 2), "repeated_3gram": repeats_ngram(text)}


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _reduce(records: list[dict], scope: str) -> dict:
    return {
        "distinct_1": _mean([r["distinct_1"] for r in records]),
        "distinct_2": _mean([r["distinct_2"] for r in records]),
        "repeated_3gram_rate": 100.0 * sum(r["repeated_3gram"] for r in records) / len(records),
    }


def _columns(scope: str, short: str, offset: int) -> tuple[Column, ...]:
    return (
        Column(
            f"{scope}_distinct_1",
            f"{short} distinct-1",
            (scope, "distinct_1"),
            None,
            fmt="fraction",
            position=20 + offset,
            table=TABLE,
            doc=f"distinct words / words per {scope} generation",
        ),
        Column(
            f"{scope}_distinct_2",
            f"{short} distinct-2",
            (scope, "distinct_2"),
            None,
            fmt="fraction",
            position=22 + offset,
            table=TABLE,
            doc=f"distinct word pairs / word pairs per {scope} generation",
        ),
        Column(
            f"{scope}_repeated_3gram_rate",
            f"{short} repeats",
            (scope, "repeated_3gram_rate"),
            False,
            position=30 + offset,
            table=TABLE,
            doc=f"% of {scope} generations that repeat a word 3-gram",
        ),
    )


register_metric(
    SplitMetric(
        "repetition",
        needs=frozenset({"generation"}),
        per_item=_per_item,
        reduce=_reduce,
        enabled=lambda eval_cfg: eval_cfg.generate,
        columns=(*_columns("unlearn", "UL", 0), *_columns("retention", "RT", 1)),
    )
)
