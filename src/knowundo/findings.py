"""The paper's six findings, checked on a run's results: each holds, does not hold, or cannot be checked (a row or
prompt variant it needs was not evaluated), with the numbers it was decided on. The rules are fixed here, from the
paper's wording (arXiv 2407.01920, Table 2 and Finding 2), never tuned to a result; every number is Unlearn /
Retention / Avg Success on the val splits, no system prompt unless the finding is about one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from knowundo.config import PAPER_ROWS
from knowundo.layout import VANILLA_LABEL

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


def _vanilla(rows) -> tuple[bool, str]:
    ul, rt = _ul(rows, VANILLA_LABEL), _rt(rows, VANILLA_LABEL)
    return ul <= 5 and rt >= 95, f"vanilla UL {ul:.1f} (<= 5), RT {rt:.1f} (>= 95)"


def _over_forget(rows) -> tuple[bool, str]:
    retaining = {label: _rt(rows, label) for label in RETAINING if label in rows}
    if not retaining:
        raise Missing(" / ".join(RETAINING))
    plain = {label: _rt(rows, label) for label in ("ga", "random_label")}
    numbers = ", ".join(f"{label} {value:.1f}" for label, value in {**plain, **retaining}.items())
    return max(plain.values()) < min(retaining.values()), f"RT {numbers}"


def _adversarial_least(rows) -> tuple[bool, str]:
    others = {label: _ul(rows, label) for label in PAPER_ROWS if label != "adversarial" and label in rows}
    if not others:
        raise Missing("the other paper rows")
    adversarial = _ul(rows, "adversarial")
    lowest = min(others, key=others.get)
    return adversarial < others[lowest], f"UL adversarial {adversarial:.1f}, lowest other {lowest} {others[lowest]:.1f}"


def _in_distribution(rows) -> tuple[bool, str]:
    pairs = [(label, _avg(rows, label), _avg(rows, label + "_ood")) for label in ("ga_gd", "ga_kl")]
    return (
        all(inside > outside for _, inside, outside in pairs),
        "; ".join(f"Avg {label} {inside:.1f} vs {label}_ood {outside:.1f}" for label, inside, outside in pairs),
    )


def _memflex_best(rows) -> tuple[bool, str]:
    others = {label: _avg(rows, label) for label in PAPER_ROWS if label != "memflex" and label in rows}
    if not others:
        raise Missing("the other paper rows")
    memflex, best = _avg(rows, "memflex"), max(others, key=others.get)
    return memflex > others[best], f"Avg memflex {memflex:.1f}, best other {best} {others[best]:.1f}"


def _helpful_prompt(rows) -> tuple[bool, str]:
    drops = {
        label: _rt(rows, label) - _value(rows, label, "retention_success", HELPFUL) for label in ("ga_gd", "memflex")
    }
    return (
        drops["ga_gd"] > drops["memflex"],
        f"RT drop under the helpful prompt: ga_gd {drops['ga_gd']:.1f}, memflex {drops['memflex']:.1f}",
    )


@dataclass(frozen=True)
class Finding:
    name: str
    statement: str
    check: Callable[[dict[str, dict]], tuple[bool, str]]


FINDINGS = (
    Finding("vanilla", "the fine-tuned model knows both scopes (Vanilla ≈ 0 / 100)", _vanilla),
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


def check_findings(results: list[dict]) -> list[dict]:
    """One record per domain and finding: ``holds`` True / False / None (not checkable) and the numbers."""
    records = []
    for domain in dict.fromkeys(r["domain"] for r in results):
        rows = {r["label"]: r for r in results if r["domain"] == domain}
        for finding in FINDINGS:
            try:
                holds, numbers = finding.check(rows)
            except Missing as missing:
                holds, numbers = None, f"not evaluated: {missing}"
            records.append(
                {
                    "domain": domain,
                    "finding": finding.name,
                    "statement": finding.statement,
                    "holds": holds,
                    "numbers": numbers,
                }
            )
    return records


def findings_markdown(records: list[dict]) -> str:
    verdict = {True: "holds", False: "does not hold", None: "-"}
    lines = [
        "# The paper's findings on this run",
        "",
        "Fixed rules (`src/knowundo/findings.py`); val splits, no system prompt unless stated.",
        "",
    ]
    for domain in dict.fromkeys(r["domain"] for r in records):
        lines += [f"## {domain}", "", "| finding | verdict | numbers |", "|---|---|---|"]
        lines += [
            f"| {r['statement']} | {verdict[r['holds']]} | {r['numbers']} |" for r in records if r["domain"] == domain
        ]
        lines.append("")
    return "\n".join(lines)


def findings_summary(records: list[dict], domain: str) -> str:
    """One line for `knowundo run`: how many hold, and which do not."""
    mine = [r for r in records if r["domain"] == domain]
    failed = [r["finding"] for r in mine if r["holds"] is False]
    checked = [r for r in mine if r["holds"] is not None]
    return f"{sum(bool(r['holds']) for r in checked)} of {len(checked)} checkable findings hold" + (
        f"; not: {', '.join(failed)}" if failed else ""
    )
