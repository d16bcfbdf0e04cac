"""The paper's six findings, checked on a run's results: each holds, does not hold, or cannot be checked (a row or
prompt variant it needs was not evaluated), with the numbers it was decided on. The rules are fixed here, from the
paper's wording (arXiv 2407.01920, Table 2 and Finding 2), never tuned to a result; every number is Unlearn /
Retention / Avg Success on the val splits (the mean over a row's seeds), no system prompt unless the finding is
about one.

Each rule is a *margin* in points, positive when the finding holds (``MemFlex's Avg - the best other row's``), so
that it can also be tested: on paired bootstrap resamples of the seeds and val items
(:func:`knowundo.replicates.paired_tests`) it holds or fails significantly, or the data cannot tell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from knowundo.config import PAPER_ROWS
from knowundo.layout import REGION_SEPARATOR, REGIONS, VANILLA_LABEL
from knowundo.replicates import RESAMPLES, Bootstrap, group_replicates, has_items, mean_view, paired_tests

NO_PROMPT, HELPFUL = "none", "helpful"
RETAINING = ("ga_gd", "ga_kl", "memflex")  # the paper's rows that also train on (or protect) retention data


class Missing(Exception):
    """A row or prompt variant the finding needs is not in the results."""


def _value(rows: dict[str, dict], label: str, key: str, variant: str = NO_PROMPT) -> float:
    result = rows.get(label)
    if result is None or variant not in result["prompts"]:
        raise Missing(f"{label}" + (f" under the {variant} prompt" if variant != NO_PROMPT else ""))
    return result["prompts"][variant][key]


def _ul(rows: dict[str, dict], label: str) -> float:
    return _value(rows, label, "unlearn_success")


def _rt(rows: dict[str, dict], label: str) -> float:
    return _value(rows, label, "retention_success")


def _avg(rows: dict[str, dict], label: str) -> float:
    return _value(rows, label, "avg_success")


def _vanilla(rows) -> tuple[float, str]:
    ul, rt = _ul(rows, VANILLA_LABEL), _rt(rows, VANILLA_LABEL)
    return min(5 - ul, rt - 95), f"vanilla UL {ul:.1f} (<= 5), RT {rt:.1f} (>= 95)"


def _over_forget(rows) -> tuple[float, str]:
    retaining = {label: _rt(rows, label) for label in RETAINING if label in rows}
    if not retaining:
        raise Missing(" / ".join(RETAINING))
    plain = {label: _rt(rows, label) for label in ("ga", "random_label")}
    numbers = ", ".join(f"{label} {value:.1f}" for label, value in {**plain, **retaining}.items())
    return min(retaining.values()) - max(plain.values()), f"RT {numbers}"


def _adversarial_least(rows) -> tuple[float, str]:
    others = {label: _ul(rows, label) for label in PAPER_ROWS if label != "adversarial" and label in rows}
    if not others:
        raise Missing("the other paper rows")
    adversarial = _ul(rows, "adversarial")
    lowest = min(others, key=others.get)
    return others[lowest] - adversarial, f"UL adversarial {adversarial:.1f}, lowest other {lowest} {others[lowest]:.1f}"


def _in_distribution(rows) -> tuple[float, str]:
    pairs = [(label, _avg(rows, label), _avg(rows, label + "_ood")) for label in ("ga_gd", "ga_kl")]
    return (
        min(inside - outside for _, inside, outside in pairs),
        "; ".join(f"Avg {label} {inside:.1f} vs {label}_ood {outside:.1f}" for label, inside, outside in pairs),
    )


def _memflex_best(rows) -> tuple[float, str]:
    others = {label: _avg(rows, label) for label in PAPER_ROWS if label != "memflex" and label in rows}
    if not others:
        raise Missing("the other paper rows")
    memflex, best = _avg(rows, "memflex"), max(others, key=others.get)
    return memflex - others[best], f"Avg memflex {memflex:.1f}, best other {best} {others[best]:.1f}"


def _helpful_prompt(rows) -> tuple[float, str]:
    drops = {
        label: _rt(rows, label) - _value(rows, label, "retention_success", HELPFUL) for label in ("ga_gd", "memflex")
    }
    return (
        drops["ga_gd"] - drops["memflex"],
        f"RT drop under the helpful prompt: ga_gd {drops['ga_gd']:.1f}, memflex {drops['memflex']:.1f}",
    )


@dataclass(frozen=True)
class Finding:
    """``check(rows)``: (margin in points, positive when it holds; the numbers it was decided on). ``inclusive``:
    a margin of exactly 0 holds too (a bound such as "UL <= 5")."""

    name: str
    statement: str
    check: Callable[[dict[str, dict]], tuple[float, str]]
    inclusive: bool = False

    def holds(self, margin: float) -> bool:
        return margin >= 0 if self.inclusive else margin > 0


FINDINGS = (
    Finding("vanilla", "the fine-tuned model knows both scopes (Vanilla ≈ 0 / 100)", _vanilla, inclusive=True),
    Finding(
        "over_forgetting", "GA and random labels over-forget: lower retention than every row that retains", _over_forget
    ),
    Finding("adversarial_least", "adversarial samples forget least of the paper's rows", _adversarial_least),
    Finding(
        "in_distribution",
        "in-distribution retain data beats out-of-distribution (GD, KL; Avg Success)",
        _in_distribution,
    ),
    Finding("memflex_best", "MemFlex has the best Avg Success of the paper's rows", _memflex_best),
    Finding(
        "helpful_prompt",
        "Finding 2: under the helpful prompt GA+GD's retention drops more than MemFlex's",
        _helpful_prompt,
    ),
)


def check_findings(results: list[dict], first_seed: int | None = None, resamples: int = RESAMPLES) -> list[dict]:
    """One record per domain and finding: ``holds`` True / False / None (not checkable) on the rows' mean over
    seeds, the numbers, the margin and — where the rows keep their per-item records — ``test``: the paired
    bootstrap test of the margin (:func:`knowundo.replicates.paired_tests`)."""
    records = []
    for domain in dict.fromkeys(r["domain"] for r in results):
        rows = group_replicates([r for r in results if r["domain"] == domain], first_seed)
        views = {row.label: mean_view(row.results) for row in rows}
        # the rows a finding reads, with the per-item records they can be resampled from
        itemized = [row for row in rows if row.label in (VANILLA_LABEL, *PAPER_ROWS) and has_items(row.results[0])]
        testable = {}
        for finding in FINDINGS:
            record = {"domain": domain, "finding": finding.name, "statement": finding.statement}
            try:
                margin, numbers = finding.check(views)
            except Missing as missing:
                records.append({**record, "holds": None, "numbers": f"not evaluated: {missing}"})
                continue
            records.append({**record, "holds": finding.holds(margin), "numbers": numbers, "margin": margin})
            try:
                finding.check({row.label: views[row.label] for row in itemized})
                testable[finding.name] = lambda view, check=finding.check: check(view)[0]
            except Missing:
                pass  # a row it reads has no per-item records (a result written without them): no test
        if testable:
            plan = Bootstrap(itemized, resamples, only=("success",), variants=(NO_PROMPT, HELPFUL))
            tests = paired_tests(plan, itemized, testable)
            for record in records:
                if record["domain"] == domain and record["finding"] in tests:
                    record["test"] = tests[record["finding"]]
    return records


def _test_text(test: dict | None) -> str:
    if not test:
        return "-"
    if test["verdict"] == "untestable":
        return "untestable (an undefined value)"
    low, high = test["interval"]
    seeds = f"{test['seeds']} seed{'s' if test['seeds'] > 1 else ''}"
    p = f"p {'<=' if test.get('p_is_bound') else '='} {test['p']:.3f}"
    return f"{test['verdict']}: margin {test['margin']:+.1f} [{low:+.1f}, {high:+.1f}], {p} ({seeds})"


def findings_markdown(records: list[dict]) -> str:
    verdict = {True: "holds", False: "does not hold", None: "-"}
    lines = [
        "# The paper's findings on this run",
        "",
        "Fixed rules (`src/knowundo/findings.py`); val splits, no system prompt unless stated; each row's mean over "
        "its seeds. The test: the finding's margin in points (positive: it holds) with its 95% interval from a "
        f"paired bootstrap over the seeds and the val items by instance ({RESAMPLES} resamples) and the two-sided "
        "p-value; significant below 0.05 (the docs: `docs/statistics.md`).",
        "",
    ]
    for domain in dict.fromkeys(r["domain"] for r in records):
        lines += [f"## {domain}", "", "| finding | verdict | numbers | test |", "|---|---|---|---|"]
        lines += [
            f"| {r['statement']} | {verdict[r['holds']]} | {r['numbers']} | {_test_text(r.get('test'))} |"
            for r in records
            if r["domain"] == domain
        ]
        lines.append("")
    return "\n".join(lines)


def findings_summary(records: list[dict], domain: str) -> str:
    """One line for `knowundo run`: how many hold, which do not, and how many of those verdicts are significant."""
    mine = [r for r in records if r["domain"] == domain]
    failed = [r["finding"] for r in mine if r["holds"] is False]
    checked = [r for r in mine if r["holds"] is not None]
    tested = [r["test"] for r in checked if r.get("test")]
    significant = (
        f" ({sum(t['verdict'] != 'not significant' for t in tested)} of {len(tested)} verdicts significant, "
        f"{max(t['seeds'] for t in tested)} seed{'s' if max(t['seeds'] for t in tested) > 1 else ''})"
        if tested
        else ""
    )
    return (
        f"{sum(bool(r['holds']) for r in checked)} of {len(checked)} checkable findings hold"
        + (f"; not: {', '.join(failed)}" if failed else "")
        + significant
    )


REGION_VALUES = (("avg_success", "Avg Succ"), ("unlearn_success", "UL Succ"), ("retention_success", "RT Succ"))


def compare_regions(results: list[dict], first_seed: int | None = None, resamples: int = RESAMPLES) -> list[dict]:
    """Each method run both as itself and inside a region (``npo`` and ``npo@memflex``): what the region changes
    in Avg / Unlearn / Retention Success (no system prompt; the region's row minus the plain one), each change
    tested as a finding is."""
    records = []
    for domain in dict.fromkeys(r["domain"] for r in results):
        rows = [
            row
            for row in group_replicates([r for r in results if r["domain"] == domain], first_seed)
            if has_items(row.results[0])
        ]
        by_label = {row.label: row for row in rows}
        pairs = [
            (plain, f"{plain}{REGION_SEPARATOR}{region}")
            for plain in by_label
            for region in REGIONS
            if f"{plain}{REGION_SEPARATOR}{region}" in by_label
        ]
        for plain, inside in pairs:
            chosen = [by_label[plain], by_label[inside]]
            margins = {
                key: lambda view, key=key, plain=plain, inside=inside: (
                    view[inside]["prompts"][NO_PROMPT][key] - view[plain]["prompts"][NO_PROMPT][key]
                )
                for key, _ in REGION_VALUES
            }
            plan = Bootstrap(chosen, resamples, only=("success",), variants=(NO_PROMPT,))
            tests = paired_tests(plan, chosen, margins)
            records.append({"domain": domain, "plain": plain, "region": inside, "tests": tests})
    return records


def regions_markdown(records: list[dict]) -> str:
    lines = [
        "# What the MemFlex region changes",
        "",
        "Each method run as itself and inside the region: the region's row minus the plain one in points (no system "
        "prompt; each row's mean over its seeds), tested as the findings are (paired bootstrap over the seeds and "
        f"val items by instance, {RESAMPLES} resamples; `holds`: the region raises it significantly, `does not hold`: "
        "lowers it).",
        "",
    ]
    for domain in dict.fromkeys(r["domain"] for r in records):
        lines += [f"## {domain}", "", "| rows | " + " | ".join(title for _, title in REGION_VALUES) + " |"]
        lines.append("|---" * (1 + len(REGION_VALUES)) + "|")
        for record in (r for r in records if r["domain"] == domain):
            cells = [_test_text(record["tests"][key]) for key, _ in REGION_VALUES]
            lines.append(f"| {record['region']} vs {record['plain']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
