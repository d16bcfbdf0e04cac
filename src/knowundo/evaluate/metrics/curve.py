"""Metrics across unlearning (paper Figure 4): Unlearn/Retention Success and PPL at every checkpoint an
unlearning run saved (``unlearn.save_steps``), teacher-forced, no system prompt. Each checkpoint's adapter is
swapped in beside the final one and removed again. Plotted by the report; no table column."""

from knowundo.artifacts import checkpoint_steps
from knowundo.evaluate.metric import ModelMetric, register_metric
from knowundo.layout import CHECKPOINTS_DIR, SCOPES


def _compute(ctx) -> list[dict]:
    curve = []
    for step, path in checkpoint_steps(ctx.adapter.parent / CHECKPOINTS_DIR):
        point = {"step": step}
        with ctx.swapped_adapter(path):
            for scope in SCOPES:
                m = ctx.score(ctx.items(scope))
                point[f"{scope}_accuracy"], point[f"{scope}_ppl"] = m["accuracy"], m["ppl"]
        point["unlearn_success"] = 100.0 - point.pop("unlearn_accuracy")
        point["retention_success"] = point.pop("retention_accuracy")
        curve.append(point)
    return curve


register_metric(ModelMetric("curve", compute=_compute, enabled=lambda ctx: bool(
    ctx.cfg.eval.curves and ctx.training and ctx.training["stage"] == "unlearn"
    and ctx.training["checkpoint_step"] is None)))
