"""General capability through lm-evaluation-harness on the in-memory model: the bundled 4-way multiple-choice
task (``eval.general_mc``; distractors are the gold sentence with the fact swapped for a same-kind value) and
any lm-eval task by name (``eval.general_tasks``), one column each (accuracy)."""

from knowundo.evaluate.general import MC_TASK, general_capability
from knowundo.evaluate.metric import Column, ModelMetric, register_metric


def _columns(tasks: dict) -> tuple[Column, ...]:
    columns = [
        Column(
            f"lm_eval_{MC_TASK}",
            "General MC",
            ("lm_eval", MC_TASK, "acc"),
            True,
            position=410,
            doc="accuracy on the bundled multiple-choice task (lm-evaluation-harness; chance 25%)",
        )
    ]
    columns += [
        Column(
            f"lm_eval_{task}", task, ("lm_eval", task, "acc"), True, position=420 + i, doc=f"lm-eval {task} accuracy"
        )
        for i, task in enumerate(sorted(t for t in tasks if t != MC_TASK))
    ]
    return tuple(c for c in columns if c.path[1] in tasks)


register_metric(
    ModelMetric(
        "lm_eval",
        compute=lambda ctx: general_capability(ctx.model, ctx.tokenizer, ctx.items("general"), ctx.cfg),
        columns_for=_columns,
        enabled=lambda ctx: ctx.cfg.eval.general_mc or bool(ctx.cfg.eval.general_tasks),
    )
)
