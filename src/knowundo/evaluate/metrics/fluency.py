"""Fluency of the generations: each generation's perplexity under a fixed judge (the base model), teacher-forced
on the generated tokens after the question; the median per split (fluency table), and the gibberish rate — the
share of non-empty generations whose judge perplexity exceeds the threshold calibrated on the gold answers
(:mod:`knowundo.evaluate.judge`; the threshold is stored with every result under ``fluency_judge``)."""

import statistics

from knowundo.evaluate.judge import JUDGE, RULE
from knowundo.evaluate.metric import Column, ModelMetric, SplitMetric, register_metric

TABLE = "fluency"
TITLE = ("Fluency of the generations: judge perplexity (judge: the base model), repetition, empty and cut "
         "generations")


def _reduce(records: list[dict], scope: str) -> dict:
    judged = [r for r in records if r["judge_ppl"] is not None]
    return {"judge_ppl_median": statistics.median(r["judge_ppl"] for r in judged) if judged else None,
            "gibberish_rate": 100.0 * sum(r["gibberish"] for r in judged) / len(judged) if judged else None}


register_metric(SplitMetric(
    "fluency", needs=frozenset({"generation", "judge"}), reduce=_reduce, enabled=lambda eval_cfg: eval_cfg.generate,
    tables={TABLE: TITLE}, columns=(
        Column("unlearn_gibberish_rate", "UL Gibberish", ("unlearn", "gibberish_rate"), None, position=320,
               doc="% of unlearn generations the judge (base model) finds gibberish"),
        Column("retention_gibberish_rate", "RT Gibberish", ("retention", "gibberish_rate"), False, position=330,
               doc="% of retention generations the judge finds gibberish"),
        Column("unlearn_judge_ppl_median", "UL judge PPL", ("unlearn", "judge_ppl_median"), None, fmt="ppl",
               position=10, table=TABLE, doc="median judge perplexity of the unlearn generations"),
        Column("retention_judge_ppl_median", "RT judge PPL", ("retention", "judge_ppl_median"), False, fmt="ppl",
               position=11, table=TABLE, doc="median judge perplexity of the retention generations"))))

register_metric(ModelMetric(
    "fluency_judge", enabled=lambda ctx: ctx.cfg.eval.generate,
    compute=lambda ctx: {"judge": JUDGE, "rule": RULE, "threshold": ctx.gibberish_threshold()}, columns=(
        Column("gibberish_threshold", "threshold", ("fluency_judge", "threshold"), None, fmt="ppl", position=5,
               table=TABLE, doc="judge perplexity above which a generation counts as gibberish (the 99th "
                                "percentile of the gold val answers'; the same for every model of a domain)"),)))
