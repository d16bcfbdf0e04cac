"""Rows trained with several seeds (``run.seeds``), and how sure a number or a comparison is.

A row's results are its *replicates*, one per training seed (the seed of the stage that trained it). A table value
of a row with several seeds is the mean over its seeds, with a 95% interval from a two-level bootstrap over the
units of the design, seeds x val items: each resample draws the seeds with replacement, then the val items by
instance — whole instances (a person, a book) with replacement, since the questions about one are not independent —
one draw per split, shared by every prompt variant, seed and row of the domain (all are evaluated on the same
items), and recomputes every value from the stored per-item records the way the evaluation reduced them (each
metric's own ``reduce``). A value with no per-item records (a model-level metric such as General MC or forget
quality) is resampled over seeds only. The interval is the percentile interval of the resampled means. With two or
three seeds the seed level is resampled from very few values and the interval is narrower than the seed-to-seed
variation warrants (a bootstrap of n values has (n-1)/n of their variance): more seeds, better intervals.

A comparison (the paper's findings; a method against itself inside the MemFlex region) is a *margin* — positive
when it holds — computed on paired resamples (every row drawn with the same seeds and the same items): its 95%
interval and a two-sided p-value, twice the smaller share of resamples on one side of zero (Efron & Tibshirani
1993, ch. 15-16); significant below 5%. With one seed, items alone are resampled: the test says whether the val
items support the verdict, not whether another training run would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy

from knowundo.errors import KnowUndoError
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
    """One row of one domain: its results, one per training seed (the run's own seed first)."""

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
    """One plan of resamples for the rows of one domain, shared by every value and comparison computed from it. Per
    resample: a draw of seeds (values, with replacement, from the seeds the domain's repeated rows share; a row with
    one result is the same for every seed: the shared fine-tune, oracle and base) and a draw of val items by
    instance (whole instances with replacement: the questions about one person or book are not independent), one
    draw per split shared by every prompt variant, seed and row — so that rows, seeds and variants are paired."""

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
        a few values. A one-line error where the rows cannot be paired (other seeds, other val items)."""
        rng = numpy.random.default_rng(seed)
        self.resamples, self.only, self.variants = resamples, only, variants
        seed_sets = {tuple(sorted(row.seeds)) for row in rows if len(row.results) > 1}
        if len(seed_sets) > 1:
            raise KnowUndoError(
                f"{rows[0].domain}: its rows were trained with different seeds ({', '.join(map(str, seed_sets))}); "
                f"finish the run, or remove the results of the seeds it no longer has"
            )
        self.seeds = list(seed_sets.pop()) if seed_sets else []
        self.seed_draws = rng.integers(0, len(self.seeds), size=(resamples, len(self.seeds))) if self.seeds else None
        itemized = [(row, result) for row in rows for result in row.results if has_items(result)]
        self.clusters: dict[str, list[list[int]]] = {}
        self.item_draws: dict[str, numpy.ndarray] = {}
        if itemized:
            first = next(iter(itemized[0][1]["prompts"].values()))
            for scope in SCOPES:
                clusters: dict[tuple, list[int]] = {}
                for record in first[scope]["per_item"]:
                    owner = record.get("instance")
                    cluster = ("item", record["index"]) if owner is None else ("instance", owner)
                    clusters.setdefault(cluster, []).append(record["index"])
                self.clusters[scope] = list(clusters.values())
                self.item_draws[scope] = rng.integers(0, len(clusters), size=(resamples, len(clusters)))
            _check_items(itemized)
        self._indices: dict[tuple[str, int], list[int]] = {}
        self._by_index: dict[tuple[int, str, str], dict[int, dict]] = {}
        self._metrics: dict[int, list[SplitMetric]] = {}
        self._cache: dict[int, dict] = {}
        self._cache_draw = -1

    def _drawn_items(self, scope: str, b: int) -> list[int]:
        if (scope, b) not in self._indices:
            clusters = self.clusters[scope]
            self._indices[scope, b] = [i for k in self.item_draws[scope][b] for i in clusters[k]]
        return self._indices[scope, b]

    def _resampled(self, result: dict, b: int) -> dict:
        """``result`` with each prompt variant's values recomputed from resample ``b``'s items (as is where it has
        no per-item records)."""
        if self._cache_draw != b:  # one resample at a time: a result drawn twice in it is recomputed once
            self._cache, self._cache_draw = {}, b
        key = id(result)
        if key in self._cache:
            return self._cache[key]
        if id(result) not in self._metrics:
            chosen = [m for m in _split_metrics_of(result) if self.only is None or m.name in self.only]
            self._metrics[id(result)] = chosen if has_items(result) and self.clusters else []
        chosen, prompts = self._metrics[id(result)], {}
        for variant, values in result["prompts"].items():
            if not chosen or (self.variants is not None and variant not in self.variants):
                prompts[variant] = values
                continue
            records = {}
            for scope in SCOPES:
                if (id(result), variant, scope) not in self._by_index:
                    self._by_index[id(result), variant, scope] = {r["index"]: r for r in values[scope]["per_item"]}
                by_index = self._by_index[id(result), variant, scope]
                # an item a prompt variant dropped (too long with its system prompt) is dropped for every row alike
                records[scope] = [by_index[i] for i in self._drawn_items(scope, b) if i in by_index]
            prompts[variant] = {**values, **reduce_variant(chosen, records)}
        self._cache[key] = {**result, "prompts": prompts}
        return self._cache[key]

    def draws(self, row: Replicates, b: int) -> list[dict]:
        """The row's results as resample ``b`` draws them: its result for each drawn seed (its only one, for a row
        that does not depend on the seed), each recomputed on the drawn items."""
        if len(row.results) == 1:
            return [self._resampled(row.results[0], b)]
        by_seed = dict(zip(row.seeds, row.results))
        return [self._resampled(by_seed[self.seeds[k]], b) for k in self.seed_draws[b]]

    def paired(self, rows: list[Replicates]) -> Iterator[dict[str, dict]]:
        """Per resample, every row's :func:`mean_view` on the same draw (the rows paired)."""
        for b in range(self.resamples):
            yield {row.label: mean_view(self.draws(row, b)) for row in rows}


def _check_items(itemized: list[tuple[Replicates, dict]]) -> None:
    """Every result of a domain was evaluated on the same val items under each prompt variant (else they cannot be
    paired: results of other data or settings were mixed in)."""
    expected: dict[tuple[str, str], set] = {}
    for row, result in itemized:
        for variant, values in result["prompts"].items():
            for scope in SCOPES:
                indices = {record["index"] for record in values[scope]["per_item"]}
                if expected.setdefault((variant, scope), indices) != indices:
                    raise KnowUndoError(
                        f"{row.domain}/{row.label} (seed {replicate_seed(result)}): its {scope} val items under the "
                        f"{variant} prompt differ from the other rows'; results of other data cannot be compared"
                    )


def interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The percentile interval of resampled values (None where any is undefined or infinite)."""
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None
    tail = 100 * (1 - confidence) / 2
    low, high = numpy.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def row_intervals(
    bootstrap: Bootstrap, row: Replicates, columns: list[Column], variants: list[str]
) -> dict[str | None, dict[str, tuple[float, float] | None]]:
    """Each column's 95% interval for one row: a prompt variant's columns per variant, the model-level ones under
    None."""
    resampled: dict[str | None, dict[str, list]] = {v: {} for v in [*variants, None]}
    for b in range(bootstrap.resamples):
        drawn = bootstrap.draws(row, b)
        for column in columns:
            for variant in variants if column.level == "variant" else [None]:
                resampled[variant].setdefault(column.key, []).append(column_mean(column, drawn, variant))
    return {v: {key: interval(values) for key, values in by_key.items()} for v, by_key in resampled.items()}


def paired_tests(
    bootstrap: Bootstrap, rows: list[Replicates], margins: dict[str, Callable[[dict[str, dict]], float]]
) -> dict[str, dict]:
    """Comparisons, each a margin over the rows' mean views (positive: it holds), tested on the paired resamples:
    the observed margin, its 95% interval, the two-sided p-value (twice the smaller share of resamples on one side
    of zero, ties counted half to each) and the verdict it gives at 5% — ``holds`` / ``does not hold`` by the side
    most resamples fall on, else ``not significant``; ``untestable`` where the margin is undefined."""
    observed = {name: margin({row.label: mean_view(row.results) for row in rows}) for name, margin in margins.items()}
    resampled: dict[str, list[float]] = {name: [] for name in margins}
    for views in bootstrap.paired(rows):
        for name, margin in margins.items():
            resampled[name].append(margin(views))
    tests = {}
    for name, values in resampled.items():
        n, bounds = len(values), interval(values)
        test = {"margin": observed[name], "interval": list(bounds) if bounds else None, "resamples": n}
        test["seeds"] = len(bootstrap.seeds) or 1
        if bounds is None or observed[name] is None or not math.isfinite(observed[name]):
            tests[name] = {**test, "p": None, "verdict": "untestable"}
            continue
        above, below = sum(v > 0 for v in values), sum(v < 0 for v in values)
        p = min(1.0, 2 * (min(above, below) + (n - above - below) / 2 + 1) / (n + 1))
        verdict = "not significant" if p >= 1 - CONFIDENCE else ("holds" if above > below else "does not hold")
        tests[name] = {**test, "p": p, "p_is_bound": min(above, below) == 0 and above + below == n, "verdict": verdict}
    return tests
