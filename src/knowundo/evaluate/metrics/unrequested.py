"""What a partial deletion request must leave alone: with ``data.forget_fraction`` below 1, the token accuracy on
the Unlearn Scope's val items of the instances no request covers, and between ``run.requests``, of those not
requested yet (teacher-forced, no system prompt) — they are as private as the requested ones, but nobody asked
(yet) to forget them, so a method that forgets them too over-forgets (TOFU's forget01 / 05 / 10 against its
retain set)."""

from knowundo.evaluate.metric import Column, ModelMetric, register_metric


def _compute(ctx) -> dict:
    scored = ctx.teacher_forced("unrequested")
    return {"items": len(scored["per_item"]), "accuracy": scored["accuracy"], "ppl": scored["ppl"]}


register_metric(
    ModelMetric(
        "unrequested",
        compute=_compute,
        enabled=lambda ctx: ctx.stage.requested is not None,
        columns=(
            Column(
                "unrequested_accuracy",
                "UL rest",
                ("unrequested", "accuracy"),
                True,
                position=250,
                doc="token accuracy on the unlearn val items of the instances no deletion request covers "
                "(data.forget_fraction < 1) or none has yet (run.requests): they must stay known",
            ),
        ),
    )
)
