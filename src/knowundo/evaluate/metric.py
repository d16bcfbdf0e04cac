"""How a metric is declared: once, in its own file under ``evaluate/metrics/``, with its name, what it needs, how
it computes, and the report columns it fills (header, direction, format, position).

Two kinds:

* :class:`SplitMetric` — per prompt variant and scope (unlearn / retention val split): optional per-item values
  from the shared per-item passes (``teacher_forced``, ``generation``), reduced to split-level values, and
  optionally values across both scopes of a variant (Avg Success).
* :class:`ModelMetric` — once per model, from an :class:`EvalContext` that runs and caches the shared passes
  (general capability, membership inference, checkpoint curves).

Each result file stores the columns of the metrics that produced it, so a report is built from files alone,
whatever metrics are registered when it runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from knowundo.errors import KnowUndoError
from knowundo.layout import SCOPES

PASSES = ("teacher_forced", "generation", "judge")  # the shared per-item passes (evaluate/run.py)
MAIN_TABLE = "table"  # the comparison table: report/table.md, .csv, .json
ROBUSTNESS_TABLE = "robustness"  # forget quality, privleak, attacks, probes: report/robustness.md, .csv, .json
ROBUSTNESS_TITLE = (
    "Robustness of forgetting (no system prompt): forget quality and privleak against the oracle, "
    "relearning and quantization attacks, paraphrase probes"
)
PROBES_TABLE = "probes"  # the adversarial probe families: report/probes.md, .csv, .json
PROBES_TITLE = (
    "Adversarial probes (no system prompt): Unlearn and Retention Success when the val questions are asked as "
    "attacks in the literature ask them"
)


def number(value) -> float | None:
    """A metric as stored in JSON (non-finite values are the strings "inf" / "nan")."""
    if value is None:
        return None
    return float(value)


def format_ppl(value) -> str:
    value = number(value)
    if value is None or math.isnan(value):
        return "-"
    return ">1e10" if value > 1e10 else f"{value:.2f}"


def _fixed(digits: int) -> Callable[[Any], str]:
    def fmt(value) -> str:
        value = number(value)
        return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"

    return fmt


def format_sci(value) -> str:
    value = number(value)
    return "-" if value is None or math.isnan(value) else f"{value:.1e}"


FORMATS: dict[str, Callable[[Any], str]] = {
    "pct": _fixed(1),
    "fraction": _fixed(2),
    "ppl": format_ppl,
    "log": _fixed(2),
    "sci": format_sci,
}


@dataclass(frozen=True)
class Column:
    """One report column. ``path`` locates the value: under ``result["prompts"][variant]`` for a split metric
    (e.g. ``("unlearn", "success")``), under ``result`` for a model metric (``("lm_eval", "mmlu", "acc")``).
    ``position`` orders the Markdown table (None: CSV/JSON only); ``breakdown``: also shown per category;
    ``level``: ``variant`` (a split metric's value per prompt variant) or ``model`` (every column of a model
    metric; a split metric's column that reads one variant's value from the result's root, ``("prompts", ...)``)."""

    key: str
    header: str
    path: tuple[str, ...]
    higher_is_better: bool | None = None
    fmt: str = "pct"
    position: int | None = None
    table: str = MAIN_TABLE
    doc: str = ""
    breakdown: bool = False
    level: str = "variant"

    def __post_init__(self):
        if self.fmt not in FORMATS:
            raise TypeError(f"column {self.key}: fmt must be one of {', '.join(FORMATS)}")
        object.__setattr__(self, "path", tuple(self.path))

    @property
    def title(self) -> str:
        arrow = {True: " ↑", False: " ↓", None: ""}[self.higher_is_better]
        return self.header + arrow

    def format(self, value) -> str:
        return FORMATS[self.fmt](value)

    def value(self, result: dict, variant: str | None):
        """The value in a result file (``variant``: the prompt variant of a variant-level column)."""
        root = result if self.level == "model" else result.get("prompts", {}).get(variant, {})
        return value_at(root, self.path)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def value_at(data: Any, path: tuple[str, ...]):
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _always(cfg) -> bool:
    return True


@dataclass(frozen=True)
class SplitMetric:
    """Values per (prompt variant, scope). ``per_item(item, record)`` adds per-item values to each item's
    record (which holds the passes' outputs); ``reduce(records, scope)`` turns a list of records (a whole
    split, or one category of it) into split-level values; ``summary(variant_result)`` adds values across
    scopes. ``enabled(eval_config)`` switches the metric off by setting."""

    name: str
    columns: tuple[Column, ...]
    reduce: Callable[[list[dict], str], dict]
    needs: frozenset = frozenset({"teacher_forced"})
    scopes: tuple[str, ...] = SCOPES
    per_item: Callable[[dict, dict], dict] | None = None
    summary: Callable[[dict], dict] | None = None
    enabled: Callable[[Any], bool] = _always
    tables: dict[str, str] = field(default_factory=dict)  # titles of report tables other than the main one


@dataclass(frozen=True)
class ModelMetric:
    """Values once per model: ``compute(ctx)`` is stored under ``result[name]``. ``columns_for(value)`` may add
    columns that depend on the value (one per lm-eval task); ``enabled(ctx)`` decides whether it runs."""

    name: str
    compute: Callable[[Any], Any]
    columns: tuple[Column, ...] = ()
    columns_for: Callable[[Any], tuple[Column, ...]] | None = None
    enabled: Callable[[Any], bool] = _always
    tables: dict[str, str] = field(default_factory=dict)  # titles of report tables other than the main one

    @property
    def robustness(self) -> bool:
        """Whether it fills the robustness or probes tables only (forget quality, privleak, the attacks, probes):
        the evaluations beyond the paper's own, whose time the evaluation record keeps apart."""
        return bool(self.tables) and set(self.tables) <= {ROBUSTNESS_TABLE, PROBES_TABLE}


METRICS: dict[str, SplitMetric | ModelMetric] = {}
_discovered = False


def register_metric(metric: SplitMetric | ModelMetric) -> SplitMetric | ModelMetric:
    """Add a metric to the registry (its file's one registration)."""
    if not isinstance(metric, (SplitMetric, ModelMetric)):
        raise TypeError("register_metric takes a SplitMetric or a ModelMetric")
    if isinstance(metric, SplitMetric) and not (set(metric.needs) <= set(PASSES) and set(metric.scopes) <= set(SCOPES)):
        raise TypeError(f"metric {metric.name}: needs must be a subset of {PASSES}, scopes of {SCOPES}")
    previous = METRICS.get(metric.name)
    if previous is not None and previous != metric:
        raise TypeError(f"two metrics are named {metric.name!r}")
    METRICS[metric.name] = metric
    return metric


def metrics() -> list[SplitMetric | ModelMetric]:
    """Every registered metric: the built-in ones of ``evaluate/metrics/`` (file order), then plugins."""
    global _discovered
    if not _discovered:
        from knowundo.evaluate import metrics as package

        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
        _discovered = True
    return list(METRICS.values())


def reduce_split(split_metrics: list[SplitMetric], records: list[dict], scope: str) -> dict:
    """A split's values (or one category's) from its per-item records: what each metric of that scope reduces them
    to. The evaluation and the report's resampling (:mod:`knowundo.replicates`) both reduce through here."""
    values = {"items": len(records)}
    for metric in split_metrics:
        if scope in metric.scopes:
            values.update(metric.reduce(records, scope))
    return values


def reduce_variant(split_metrics: list[SplitMetric], records: dict[str, list[dict]]) -> dict:
    """Both scopes of one prompt variant from their per-item records, plus the values across scopes (Avg
    Success)."""
    variant = {scope: reduce_split(split_metrics, records[scope], scope) for scope in SCOPES}
    for metric in split_metrics:
        if metric.summary is not None:
            variant.update(metric.summary(variant))
    return variant


def check_columns(columns: list[Column]) -> list[Column]:
    keys = [c.key for c in columns]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise KnowUndoError(f"two metrics declare the report column {duplicated[0]!r}")
    return columns


@dataclass
class Columns:
    """The columns (and table titles) a set of result files declares, by table, in Markdown order."""

    all: list[Column] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, results: list[dict]) -> Columns:
        seen: dict[str, Column] = {}
        titles: dict[str, str] = {}
        for result in results:
            for spec in result.get("columns", []):
                column = Column(**spec)
                seen.setdefault(column.key, column)
            titles.update(result.get("tables", {}))
        return cls(list(seen.values()), titles)

    def table(self, name: str, shown_only: bool = False) -> list[Column]:
        chosen = [c for c in self.all if c.table == name and (c.position is not None or not shown_only)]
        return sorted(chosen, key=lambda c: (c.position is None, c.position or 0))

    def tables(self) -> list[str]:
        return list(dict.fromkeys(c.table for c in self.all))

    def breakdown(self, scope: str) -> list[Column]:
        return [c for c in self.table(MAIN_TABLE, shown_only=True) if c.breakdown and c.path[0] == scope]
