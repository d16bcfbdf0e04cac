"""ROUGE-L of the greedy generations against the gold answers (rouge-score's tokenizer: lower-cased alphanumeric
words), recall (the paper's) and F1, in percent."""

from functools import lru_cache

from knowundo.evaluate.metric import Column, SplitMetric, register_metric


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(prediction: str, reference: str) -> dict[str, float]:
    score = _scorer().score(reference, prediction)["rougeL"]
    return {"rougeL_recall": 100.0 * score.recall, "rougeL_f1": 100.0 * score.fmeasure}


def _reduce(records: list[dict], scope: str) -> dict:
    return {key: sum(r[key] for r in records) / len(records) for key in ("rougeL_recall", "rougeL_f1")}


register_metric(
    SplitMetric(
        "rouge",
        needs=frozenset({"generation"}),
        reduce=_reduce,
        per_item=lambda item, record: rouge_l(record["generation"], item["labels"]),
        enabled=lambda eval_cfg: eval_cfg.generate,
        columns=(
            Column(
                "unlearn_rougeL_recall",
                "UL ROUGE-L",
                ("unlearn", "rougeL_recall"),
                False,
                position=120,
                breakdown=True,
                doc="ROUGE-L recall of greedy generations against the unlearn answers",
            ),
            Column(
                "retention_rougeL_recall",
                "RT ROUGE-L",
                ("retention", "rougeL_recall"),
                True,
                position=220,
                breakdown=True,
                doc="ROUGE-L recall of greedy generations against the retention answers",
            ),
            Column("unlearn_rougeL_f1", "UL ROUGE-L F1", ("unlearn", "rougeL_f1"), False),
            Column("retention_rougeL_f1", "RT ROUGE-L F1", ("retention", "rougeL_f1"), True),
        ),
    )
)
