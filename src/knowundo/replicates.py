"""Rows trained with several seeds (``run.seeds``), and how sure a number or a comparison is.

A row's results are its *replicates*, one per training seed (the seed of the stage that trained it). A table value
of a row with several seeds is the mean over its seeds, with a 95% interval from a two-level bootstrap (resampling
the units of a crossed design, seeds x val items): each resample draws the seeds with replacement, then the val
items with replacement — one draw of item indices per prompt variant and split, shared by every seed and every row
of the domain, since all are evaluated on the same items — and recomputes every value from the stored per-item
records the way the evaluation reduced them (each metric's own ``reduce``). A value with no per-item records (a
model-level metric such as General MC or forget quality) is resampled over seeds only. The interval is the
percentile interval of the resampled means.

A comparison (the paper's findings; a method against itself inside the MemFlex region) is a *margin* — positive
when it holds — computed on the same resamples with the rows paired (the same seeds, the same items): it holds or
fails significantly when its 95% interval excludes zero; the two-sided p-value is twice the share of resamples on
the other side of zero (Efron & Tibshirani 1993, ch. 15-16). With one seed, items alone are resampled: the test says
whether the val items support the verdict, not whether another training run would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy

from knowundo.evaluate.metric import Column, SplitMetric, metrics, number, reduce_variant
from knowundo.layout import SCOPES

CONFIDENCE = 0.95
RESAMPLES = 1000
RESAMPLING_SEED = 0  # the bootstrap's own generator: a report is the same every time it is built


def replicate_seed(result: dict) -> int | None:
    """The seed a result's model was trained with (its training stage's), or the evaluation's for an untrained
    model."""
    meta = result.get("meta") or {}
    trained = (meta.get("training") or {}).get("seed")
    return trained if trained is not None else meta.get("seed")


@dataclass
class Replicates:
    """One row of one domain: its results, one per training seed, in seed order."""

    domain: str
    label: str
    results: list[dict] = field(default_factory=list)

    @property
    def seeds(self) -> list[int | None]:
        return [replicate_seed(r) for r in self.results]


def group_replicates(results: list[dict], first_seed: int | None = None) -> list[Replicates]:
    """The results by (domain, label), in the order of their first result; within a row, ``first_seed`` (the
    run's own) first, then by seed."""
    rows: dict[tuple[str, str], Replicates] = {}
    for result in results:
        rows.setdefault((result["domain"], result["label"]), Replicates(result["domain"], result["label"]))
        rows[result["domain"], result["label"]].results.append(result)
    for row in rows.values():
        row.results.sort(key=lambda r: (replicate_seed(r) != first_seed, replicate_seed(r) or 0))
    return list(rows.values())


def primary_results(rows: list[Replicates]) -> list[dict]:
    """One result per row, its first seed's: what samples, curves and breakdowns show."""
    return [row.results[0] for row in rows]


def mean_view(results: list[dict]) -> dict:
    """A row's results as one: each prompt variant's top-level values (Unlearn / Retention / Avg Success, ...)
    averaged over the results given (the drawn seeds of a resample: repeats count again)."""
    variants = [v for v in results[0]["prompts"] if all(v in r["prompts"] for r in results)]
    prompts = {}
    for variant in variants:
        keys = [k for k, v in results[0]["prompts"][variant].items() if isinstance(v, (int, float))]
        prompts[variant] = {k: _mean([r["prompts"][variant].get(k) for r in results]) for k in keys}
    return {**results[0], "prompts": prompts}


def _mean(values: list) -> float | None:
    numbers = [number(v) for v in values]
    if not numbers or any(v is None or math.isnan(v) for v in numbers):
        return None
    return sum(numbers) / len(numbers)


def column_mean(column: Column, results: list[dict], variant: str | None) -> float | None:
    """A column's value averaged over a row's results (None if any result lacks it)."""
    return _mean([column.value(r, variant) for r in results])


def _split_metrics_of(result: dict) -> list[SplitMetric]:
    """The registered split metrics that filled this result's columns (their ``reduce`` recomputes them)."""
    keys = {spec["key"] for spec in result.get("columns", [])}
    return [m for m in metrics() if isinstance(m, SplitMetric) and any(c.key in keys for c in m.columns)]


def has_items(result: dict) -> bool:
    """Whether a result keeps the per-item records its split values can be resampled from."""
    return all(
        isinstance(variant.get(scope), dict) and "per_item" in variant[scope]
        for variant in result.get("prompts", {}).values()
        for scope in SCOPES
    ) and bool(result.get("prompts"))


class Bootstrap:
    """One plan of resamples for the rows of one domain, shared by every value and comparison computed from it:
    per resample, a draw of seed positions for each replicate count and a draw of item indices for each prompt
    variant and split."""

    def __init__(
        self,
        rows: list[Replicates],
        resamples: int = RESAMPLES,
        seed: int = RESAMPLING_SEED,
        only: tuple[str, ...] | None = None,
        variants: tuple[str, ...] | None = None,
    ):
        """``only``: the names of the split metrics to recompute (the others' values stay as evaluated);
        ``variants``: the prompt variants to recompute (the others stay as evaluated): for a comparison that reads
        a few values."""
        rng = numpy.random.default_rng(seed)
        self.only, self.variants = only, variants
        self._by_index: dict[tuple[int, str, str], dict[int, dict]] = {}
        self.resamples = resamples
        self.seed_draws = {n: rng.integers(0, n, size=(resamples, n)) for n in sorted({len(r.results) for r in rows})}
        self.items: dict[tuple[str, str], tuple[list[int], numpy.ndarray]] = {}
        itemized = [r.results[0] for r in rows if has_items(r.results[0])]
        for variant in sorted({v for result in itemized for v in result["prompts"]}):
            for scope in SCOPES:
                indices = next(
                    [record["index"] for record in result["prompts"][variant][scope]["per_item"]]
                    for result in itemized
                    if variant in result["prompts"]
                )
                self.items[variant, scope] = (indices, rng.integers(0, len(indices), size=(resamples, len(indices))))
        self._split_metrics: dict[int, list[SplitMetric]] = {}

    def _resampled(self, result: dict, b: int) -> dict:
        """``result`` with each prompt variant's values recomputed from resample ``b``'s items (as is where it has
        no per-item records)."""
        if not has_items(result):
            return result
        chosen = self._split_metrics.setdefault(
            id(result), [m for m in _split_metrics_of(result) if self.only is None or m.name in self.only]
        )
        prompts = {}
        for variant, values in result["prompts"].items():
            skipped = self.variants is not None and variant not in self.variants
            if skipped or not chosen or (variant, SCOPES[0]) not in self.items:
                prompts[variant] = values
                continue
            records = {}
            for scope in SCOPES:
                by_index = self._by_index.get((id(result), variant, scope))
                if by_index is None:
                    by_index = {record["index"]: record for record in values[scope]["per_item"]}
                    self._by_index[id(result), variant, scope] = by_index
                indices, draws = self.items[variant, scope]
                records[scope] = [by_index[indices[k]] for k in draws[b] if indices[k] in by_index]
            prompts[variant] = {**values, **reduce_variant(chosen, records)}
        return {**result, "prompts": prompts}

    def draws(self, row: Replicates) -> Iterator[list[dict]]:
        """Per resample, the row's results as drawn: its seeds with replacement, each recomputed on the drawn
        items."""
        positions = self.seed_draws[len(row.results)]
        for b in range(self.resamples):
            cache: dict[int, dict] = {}
            yield [cache.setdefault(int(p), self._resampled(row.results[int(p)], b)) for p in positions[b]]

    def paired(self, rows: list[Replicates]) -> Iterator[dict[str, dict]]:
        """Per resample, every row's :func:`mean_view` on the same draw (the rows paired)."""
        for drawn in zip(*(self.draws(row) for row in rows)):
            yield {row.label: mean_view(results) for row, results in zip(rows, drawn)}


def interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The percentile interval of resampled values (None where any is undefined)."""
    if not values or any(v is None or math.isnan(v) for v in values):
        return None
    tail = 100 * (1 - confidence) / 2
    low, high = numpy.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def row_intervals(
    bootstrap: Bootstrap, row: Replicates, columns: list[Column], variants: list[str | None]
) -> dict[str | None, dict[str, tuple[float, float] | None]]:
    """Each column's 95% interval for one row, per prompt variant (None: the model-level columns' section)."""
    resampled: dict[str | None, dict[str, list]] = {v: {c.key: [] for c in columns} for v in variants}
    for drawn in bootstrap.draws(row):
        for variant in variants:
            for column in columns:
                resampled[variant][column.key].append(column_mean(column, drawn, variant))
    return {v: {key: interval(values) for key, values in by_key.items()} for v, by_key in resampled.items()}


def paired_tests(
    bootstrap: Bootstrap, rows: list[Replicates], margins: dict[str, Callable[[dict[str, dict]], float]]
) -> dict[str, dict]:
    """Comparisons, each a margin over the rows' mean views (positive: it holds), tested on the paired resamples:
    the observed margin, its 95% interval, the two-sided p-value and the verdict — ``holds`` / ``does not hold``
    where the interval excludes zero, else ``not significant``."""
    observed = {name: margin({row.label: mean_view(row.results) for row in rows}) for name, margin in margins.items()}
    resampled: dict[str, list[float]] = {name: [] for name in margins}
    for views in bootstrap.paired(rows):
        for name, margin in margins.items():
            resampled[name].append(margin(views))
    tests = {}
    for name, values in resampled.items():
        bounds, n = interval(values), len(values)
        above = sum(v > 0 for v in values)
        verdict = (
            "not significant"
            if bounds is None or bounds[0] <= 0 <= bounds[1]
            else ("holds" if bounds[0] > 0 else "does not hold")
        )
        tests[name] = {
            "margin": observed[name],
            "interval": list(bounds) if bounds else None,
            "p": min(1.0, 2 * (min(above, n - above) + 1) / (n + 1)),
            "p_is_bound": min(above, n - above) == 0,  # no resample on the other side: p is at most this
            "verdict": verdict,
            "seeds": max(len(row.results) for row in rows),
            "resamples": n,
        }
    return tests
