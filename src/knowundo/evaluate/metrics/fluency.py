"""Fluency of the generations: each generation's perplexity under two fixed judges (the base model; the oracle
when the domain has one), teacher-forced on the generated tokens after the question; the median per split
(fluency table), and the gibberish rate — the share of non-empty generations whose judge perplexity exceeds the
judge's threshold calibrated on the gold answers (:mod:`knowundo.evaluate.judge`; the thresholds are stored with
every result under ``fluency_judge``)."""

import statistics

from knowundo.evaluate.judge import JUDGES, RULE, record_keys
from knowundo.evaluate.metric import (
    MAIN_TABLE,
    ROBUSTNESS_TABLE,
    ROBUSTNESS_TITLE,
    Column,
    ModelMetric,
    SplitMetric,
    register_metric,
)

TABLE = "fluency"
TITLE = (
    "Fluency of the generations: judge perplexity (judges: the base model and the oracle), repetition, empty "
    "and cut generations"
)


def _reduce(records: list[dict], scope: str) -> dict:
    values = {}
    for judge in JUDGES:
        ppl_key, flag_key = record_keys(judge)
        judged = [r for r in records if r.get(ppl_key) is not None]
        if judge == "base" or judged:
            prefix = "" if judge == "base" else f"{judge}_"
            values[f"{prefix}judge_ppl_median"] = statistics.median(r[ppl_key] for r in judged) if judged else None
            values[f"{prefix}gibberish_rate"] = (
                100.0 * sum(r[flag_key] for r in judged) / len(judged) if judged else None
            )
    return values


def _columns(judge: str, table: str, position: int, level: str = "variant", root: tuple[str, ...] = ()) -> tuple:
    """Gibberish rates of both scopes under one judge (``root``: the path to a variant from a result, for the
    model-level copies in the robustness table)."""
    prefix, by = ("", "") if judge == "base" else (f"{judge}_", f" ({judge})")
    return tuple(
        Column(
            f"{'plain_' if root else ''}{scope}_{prefix}gibberish_rate",
            f"{short} Gibberish{by}",
            (*root, scope, f"{prefix}gibberish_rate"),
            None if scope == "unlearn" else False,
            position=position + i,
            table=table,
            level=level,
            doc=f"% of {scope} generations{' (no system prompt)' if root else ''} {JUDGES[judge]} finds gibberish",
        )
        for i, (scope, short) in enumerate((("unlearn", "UL"), ("retention", "RT")))
    )


def _median_columns(judge: str, position: int) -> tuple[Column, ...]:
    prefix = "" if judge == "base" else f"{judge}_"
    return tuple(
        Column(
            f"{scope}_{prefix}judge_ppl_median",
            f"{short} {judge} PPL",
            (scope, f"{prefix}judge_ppl_median"),
            None if scope == "unlearn" else False,
            fmt="ppl",
            position=position + i,
            table=TABLE,
            doc=f"median perplexity of the {scope} generations under {JUDGES[judge]}",
        )
        for i, (scope, short) in enumerate((("unlearn", "UL"), ("retention", "RT")))
    )


register_metric(
    SplitMetric(
        "fluency",
        needs=frozenset({"generation", "judge"}),
        reduce=_reduce,
        enabled=lambda eval_cfg: eval_cfg.generate,
        tables={TABLE: TITLE, ROBUSTNESS_TABLE: ROBUSTNESS_TITLE},
        columns=(
            *_columns("base", MAIN_TABLE, 320),
            *_median_columns("base", 10),
            *_median_columns("oracle", 12),
            *_columns("oracle", TABLE, 14),
            # beside the attacks: forgetting that survives an attack only because the model no longer speaks is
            # no robustness
            *_columns("base", ROBUSTNESS_TABLE, 3, "model", ("prompts", "none")),
            *_columns("oracle", ROBUSTNESS_TABLE, 5, "model", ("prompts", "none")),
        ),
    )
)

register_metric(
    ModelMetric(
        "fluency_judge",
        enabled=lambda ctx: ctx.cfg.eval.generate,
        compute=lambda ctx: {
            "rule": RULE,
            **{judge: {"judge": JUDGES[judge], "threshold": ctx.gibberish_threshold(judge)} for judge in ctx.judges()},
        },
        columns=tuple(
            Column(
                f"{'' if judge == 'base' else judge + '_'}gibberish_threshold",
                f"{judge} threshold",
                ("fluency_judge", judge, "threshold"),
                None,
                fmt="ppl",
                position=5 + i,
                table=TABLE,
                doc=f"perplexity under {JUDGES[judge]} above which a generation counts as gibberish (the 99th "
                f"percentile of the gold val answers'; the same for every model of a domain)",
            )
            for i, judge in enumerate(JUDGES)
        ),
    )
)
