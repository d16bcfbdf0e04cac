"""Forget quality (TOFU, Maini et al. 2024, arXiv 2401.06121): the p-value of a two-sample Kolmogorov-Smirnov
test (scipy.stats.ks_2samp) between a per-item statistic on the unlearn val split under the evaluated model and
under the oracle (fine-tuned without the Unlearn Scope). High p: the two are indistinguishable, as perfect
unlearning would be; low p: the model still differs from one that never learned the data — by remembering, or
by over-forgetting. It looks at the unlearn val split only: retention damage is the other columns' business. The
statistic is the truth ratio (as log R: the KS test depends only on the order of the values) where every item has
paraphrased and perturbed answers, otherwise the mean answer-token log-probability (the result names it)."""

import math

from scipy.stats import ks_2samp

from knowundo.data.validate import has_probes
from knowundo.evaluate.metric import ROBUSTNESS_TABLE, ROBUSTNESS_TITLE, Column, ModelMetric, register_metric


def ks_p_value(values: list[float], reference: list[float]) -> dict:
    """p and log10 p of the two-sided KS test (log10 p = -inf when p underflows to 0)."""
    p = float(ks_2samp(values, reference).pvalue)
    return {"p": p, "log10_p": math.log10(p) if p > 0 else -math.inf}


def _statistic(ctx) -> tuple[str, list[float]]:
    """Items the formatter could not fit are left out, for the model and the oracle alike (same formatter)."""
    items = ctx.robustness_items("unlearn")
    if ctx.cfg.attack.paraphrase and items and all(has_probes(item) for item in items):
        ratios = [r["log_truth_ratio"] for r in ctx.probes("unlearn")]
        return "log_truth_ratio", [ratio for ratio in ratios if ratio is not None]
    return "mean_logprob", [r["mean_logprob"] for r in ctx.teacher_forced("unlearn")["per_item"]]


def _compute(ctx) -> dict:
    """The model's per-item statistic is kept, so that a model evaluated later can be compared with it (the
    oracle's result is the reference); p only where the oracle's result is given."""
    statistic, values = _statistic(ctx)
    result = {"statistic": statistic, "values": values, "p": None, "log10_p": None}
    oracle = ctx.references.get("oracle", {}).get("forget_quality")
    if oracle and oracle["statistic"] == statistic:
        result.update(ks_p_value(values, oracle["values"]))
    return result


register_metric(
    ModelMetric(
        "forget_quality",
        compute=_compute,
        tables={ROBUSTNESS_TABLE: ROBUSTNESS_TITLE},
        columns=(
            # the plain values the attacks are read against (the main table's, no system prompt)
            Column(
                "plain_unlearn_success",
                "UL",
                ("prompts", "none", "unlearn_success"),
                True,
                position=1,
                table=ROBUSTNESS_TABLE,
                doc="Unlearn / Retention Success without any attack (no system prompt)",
            ),
            Column(
                "plain_retention_success",
                "RT",
                ("prompts", "none", "retention_success"),
                True,
                position=2,
                table=ROBUSTNESS_TABLE,
            ),
            Column(
                "forget_quality",
                "Forget Q",
                ("forget_quality", "p"),
                True,
                fmt="sci",
                position=10,
                table=ROBUSTNESS_TABLE,
                doc="KS-test p-value against the oracle on unlearn val (1 = "
                "indistinguishable from never having learned it)",
            ),
            Column(
                "forget_quality_log10",
                "log10 FQ",
                ("forget_quality", "log10_p"),
                True,
                fmt="log",
                position=11,
                table=ROBUSTNESS_TABLE,
            ),
        ),
    )
)
