"""General capability outside both scopes: teacher-forced token accuracy and perplexity on the held-out part of
the general-knowledge set (world facts, arithmetic, commonsense), no system prompt."""

from knowundo.evaluate.metric import Column, ModelMetric, register_metric

register_metric(
    ModelMetric(
        "general",
        compute=lambda ctx: ctx.teacher_forced("general"),
        columns=(
            Column(
                "general_heldout_accuracy",
                "General",
                ("general", "accuracy"),
                True,
                position=400,
                doc="token accuracy on the held-out general-knowledge set",
            ),
            Column("general_heldout_ppl", "General PPL", ("general", "ppl"), False, fmt="ppl"),
        ),
    )
)
