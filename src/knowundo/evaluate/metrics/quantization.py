"""After the quantization attack (:mod:`knowundo.attacks.quantize`; Zhang et al. 2024, arXiv 2410.16454): the
adapter merged into the base and every linear layer quantized with each scheme of ``attack.quantize``;
Unlearn / Retention Success (teacher-forced, no system prompt) of each quantized model. Small LoRA updates can
fall inside the quantization step, so forgetting that is a small weight change may not survive."""

from knowundo.attacks.quantize import parse_scheme, quantized
from knowundo.evaluate.metric import ROBUSTNESS_TABLE, ROBUSTNESS_TITLE, Column, ModelMetric, register_metric


def _compute(ctx) -> dict:
    values = {}
    for name in ctx.cfg.attack.quantize:
        with quantized(ctx.model, parse_scheme(name)) as info:
            unlearn, retention = (
                ctx.score(ctx.robustness_items(scope))["accuracy"] for scope in ("unlearn", "retention")
            )
        values[name] = {"unlearn_success": 100.0 - unlearn, "retention_success": retention, **info}
    return values


def _columns(values: dict) -> tuple[Column, ...]:
    columns = []
    for i, name in enumerate(values):
        columns += [
            Column(
                f"quant_{name}_unlearn_success",
                f"UL {name}",
                ("quantization", name, "unlearn_success"),
                True,
                position=40 + 2 * i,
                table=ROBUSTNESS_TABLE,
                doc=""
                if i
                else "Unlearn / Retention Success after quantizing the merged model with "
                "that scheme (intN: round-to-nearest, N bits; nf4: NormalFloat4; gG: "
                "groups of G)",
            ),
            Column(
                f"quant_{name}_retention_success",
                f"RT {name}",
                ("quantization", name, "retention_success"),
                True,
                position=41 + 2 * i,
                table=ROBUSTNESS_TABLE,
            ),
        ]
    return tuple(columns)


register_metric(
    ModelMetric(
        "quantization",
        compute=_compute,
        columns_for=_columns,
        enabled=lambda ctx: bool(ctx.cfg.attack.quantize),
        tables={ROBUSTNESS_TABLE: ROBUSTNESS_TITLE},
    )
)
