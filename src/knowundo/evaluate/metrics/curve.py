"""Metrics across unlearning (paper Figure 4): Unlearn/Retention Success and PPL at every checkpoint an
unlearning run saved (``unlearn.save_steps``), teacher-forced, no system prompt. Each checkpoint's adapter is
loaded beside the final one and removed again. Plotted by the report; no table column."""

from knowundo.artifacts import checkpoint_steps
from knowundo.evaluate.metric import ModelMetric, register_metric
from knowundo.evaluate.teacher_forced import evaluate_items
from knowundo.layout import CHECKPOINTS_DIR, SCOPES

CHECKPOINT_ADAPTER = "checkpoint"


def _compute(ctx) -> list[dict]:
    model, formatter, curve = ctx.model, ctx.formatter("none"), []
    for step, path in checkpoint_steps(ctx.adapter.parent / CHECKPOINTS_DIR):
        model.load_adapter(str(path), adapter_name=CHECKPOINT_ADAPTER)
        model.set_adapter(CHECKPOINT_ADAPTER)
        point = {"step": step}
        for scope in SCOPES:
            m = evaluate_items(model, formatter, ctx.items(scope), ctx.cfg.eval.batch_size, ctx.cfg.eval.mia_k)
            point[f"{scope}_accuracy"], point[f"{scope}_ppl"] = m["accuracy"], m["ppl"]
        point["unlearn_success"] = 100.0 - point.pop("unlearn_accuracy")
        point["retention_success"] = point.pop("retention_accuracy")
        curve.append(point)
        model.set_adapter("default")
        model.delete_adapter(CHECKPOINT_ADAPTER)
    return curve


register_metric(ModelMetric("curve", compute=_compute, enabled=lambda ctx: bool(
    ctx.cfg.eval.curves and ctx.training and ctx.training["stage"] == "unlearn"
    and ctx.training["checkpoint_step"] is None)))
