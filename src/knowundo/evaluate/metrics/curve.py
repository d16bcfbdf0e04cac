"""Metrics across unlearning (paper Figure 4): Unlearn/Retention Success and PPL at every checkpoint an
unlearning run saved (``unlearn.save_steps``), teacher-forced, no system prompt. Each checkpoint's adapter is
swapped in beside the final one and removed again; a checkpoint whose weights are the evaluated adapter's (the
last step) reuses the passes already made. Plotted by the report; no table column."""

from knowundo.artifacts import checkpoint_steps
from knowundo.evaluate.metric import ModelMetric, register_metric
from knowundo.layout import CHECKPOINTS_DIR, SCOPES
from knowundo.stage import adapter_hash


def _compute(ctx) -> list[dict]:
    curve, final = [], adapter_hash(ctx.adapter)
    for step, path in checkpoint_steps(ctx.adapter.parent / CHECKPOINTS_DIR):
        if adapter_hash(path) == final:
            scored = {scope: ctx.teacher_forced(scope) for scope in SCOPES}
        else:
            with ctx.swapped_checkpoint(path):
                scored = {scope: ctx.score(ctx.items(scope)) for scope in SCOPES}
        point = {
            "step": step,
            "unlearn_success": 100.0 - scored["unlearn"]["accuracy"],
            "unlearn_ppl": scored["unlearn"]["ppl"],
            "retention_success": scored["retention"]["accuracy"],
            "retention_ppl": scored["retention"]["ppl"],
        }
        curve.append(point)
    return curve


register_metric(
    ModelMetric(
        "curve",
        compute=_compute,
        enabled=lambda ctx: bool(
            ctx.cfg.eval.curves
            and ctx.training
            and ctx.training["stage"] == "unlearn"
            and ctx.training["checkpoint_step"] is None
        ),
    )
)
