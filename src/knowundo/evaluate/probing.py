"""Scoring the adversarial probe families (:mod:`knowundo.attacks.probes`) on the robustness items of both val
splits (or ``attack.probe_items`` of them), and the metric each family registers through.

An answer family's item scores the teacher-forced token accuracy of its gold answer after the probe prompt (mean
over the item's probes); Unlearn Success on the family is 100 - that accuracy, Retention Success the accuracy, as
the plain table reads its val splits. A choice family's item scores 100 when the model finds the true option
likeliest (mean log-probability of the option's tokens) and 0 otherwise; its successes read the accuracy above
the chance rate (:func:`above_chance`), so that every family's Unlearn Success is 100 for a model that shows no
trace of the answer and the worst case over families compares them.
"""

from __future__ import annotations

import random

from knowundo.attacks.probes import FAMILIES, ProbeFamily, probe_rng, register_family
from knowundo.evaluate.generation import greedy_generate
from knowundo.evaluate.metric import PROBES_TABLE, PROBES_TITLE, Column, ModelMetric, register_metric
from knowundo.layout import SCOPES

LETTERS = "ABCDEFGH"
WORST_SAMPLES = 2  # greedy answers kept for the family that brings the most back, per row


def probed_items(ctx, scope: str) -> list[int]:
    """The val positions the probes ask about: the robustness items of ``scope``, or a seeded choice of
    ``attack.probe_items`` of them (the same for every family and every model of a run, so they compare)."""
    positions = ctx.robustness_indices(ctx.items(scope))
    limit = ctx.cfg.attack.probe_items
    if not limit or len(positions) <= limit:
        return positions
    return sorted(random.Random(f"{ctx.cfg.seed}/probes/{scope}").sample(positions, limit))


def probe_items(ctx, family: ProbeFamily, scope: str) -> list[tuple[int, dict]]:
    """(val position, probe item) for the probed items of ``scope``."""
    items, world = ctx.items(scope), ctx.probe_world
    return [
        (index, probe)
        for index in probed_items(ctx, scope)
        for probe in family.build(items[index], scope, world, probe_rng(ctx.cfg.seed, family.name, scope, index))
    ]


def above_chance(accuracy: float, chance: float) -> float:
    """A choice accuracy as knowledge shown, 0 at (or below) the chance rate and 100 when always right: a model that
    forgot picks at chance, not never."""
    return 100.0 * max(0.0, accuracy - chance) / (100.0 - chance)


def score_family(ctx, family: ProbeFamily, scope: str) -> dict:
    """A family's values on one scope: items probed, accuracy, success, the chance rate of a choice family, the
    probes the length limit cut or dropped, and per probed item its accuracy (the positions :func:`worst_samples`
    draws from)."""
    built = probe_items(ctx, family, scope)
    if not built:
        return {"items": 0, "accuracy": None, "success": None}
    per_item: dict[int, list[float]] = {}
    counts: dict[str, int] = {}
    if family.choice:  # every option after the same prompt; the likeliest one is the model's choice
        asked = [(i, {**probe, "labels": option}) for i, probe in built for option in probe["options"]]
        logprobs: dict[int, list[float]] = {}
        for owner, record in _scored(ctx, asked, counts):
            logprobs.setdefault(owner, []).append(record["mean_logprob"])
        probes = dict(built)  # a choice family asks one probe per item
        for i, values in logprobs.items():
            if len(values) == len(probes[i]["options"]):  # an option the formatter dropped: no choice to read
                per_item[i] = [100.0 if max(range(len(values)), key=values.__getitem__) == probes[i]["gold"] else 0.0]
        chance = 100.0 * sum(1 / len(probe["options"]) for _, probe in built) / len(built)
    else:
        for owner, record in _scored(ctx, built, counts):
            per_item.setdefault(owner, []).append(record["accuracy"])
    if not per_item:  # every probe too long to score an answer token
        return {"items": 0, "accuracy": None, "success": None, **counts}
    means = {i: sum(values) / len(values) for i, values in per_item.items()}
    accuracy = sum(means.values()) / len(means)
    known = above_chance(accuracy, chance) if family.choice else accuracy
    return {
        "items": len(means),
        "accuracy": accuracy,
        "success": 100.0 - known if scope == "unlearn" else known,
        **({"chance": chance} if family.choice else {}),
        **counts,
        "per_item": [{"index": i, "accuracy": means[i]} for i in sorted(means)],
    }


def _scored(ctx, asked: list[tuple[int, dict]], counts: dict) -> list[tuple[int, dict]]:
    """(val position, score record) for each probe the formatter kept (one too long for any answer token is
    dropped, never misattributed); adds to ``counts`` how many probes lost answer tokens to the length limit
    (``truncated``) or were dropped."""
    scored = ctx.score_probes([probe for _, probe in asked])
    counts["truncated"] = counts.get("truncated", 0) + scored["truncated"]
    counts["dropped"] = counts.get("dropped", 0) + scored["dropped"]
    return [(asked[record["index"]][0], record) for record in scored["per_item"]]


def _family_values(ctx, family: ProbeFamily) -> dict:
    values = {scope: dict(ctx.probe_family(family, scope)) for scope in SCOPES}
    for scope in SCOPES:
        values[scope].pop("per_item", None)
    return values


def probe_metric(family: ProbeFamily, position: int) -> ModelMetric:
    """The family's metric (registered with the family): Unlearn and Retention Success under it, two columns of
    the probes table from ``position``."""
    register_family(family)
    chance = " (accuracy against the chance rate stored beside it)" if family.choice else ""

    def compute(ctx) -> dict:
        return _family_values(ctx, family)

    compute.__module__ = family.build.__module__  # the family's metric file, whose docstring documents it
    return ModelMetric(
        f"probe_{family.name}",
        compute=compute,
        enabled=lambda ctx: family.name in ctx.cfg.attack.probes,
        tables={PROBES_TABLE: PROBES_TITLE},
        columns=(
            Column(
                f"probe_{family.name}_unlearn_success",
                f"{family.header} UL",
                (f"probe_{family.name}", "unlearn", "success"),
                True,
                position=position,
                table=PROBES_TABLE,
                doc=f"Unlearn Success, {family.doc}{chance}",
            ),
            Column(
                f"probe_{family.name}_retention_success",
                f"{family.header} RT",
                (f"probe_{family.name}", "retention", "success"),
                True,
                position=position + 1,
                table=PROBES_TABLE,
                doc=f"Retention Success, {family.doc}",
            ),
        ),
    )


def register_probe(family: ProbeFamily, position: int) -> ModelMetric:
    """One family's registration (its metric file's one call)."""
    return register_metric(probe_metric(family, position))


def worst_case(ctx) -> dict:
    """Per scope, the enabled family with the lowest success (the one that brings the most back, or costs the
    most retention) and its value; greedy answers under that family's unlearn probes for the items it recovered
    most of (unless ``eval.generate`` is off)."""
    out: dict = {}
    for scope in SCOPES:
        scored = [
            (values["success"], name)
            for name in ctx.cfg.attack.probes
            if (values := ctx.probe_family(FAMILIES[name], scope))["success"] is not None
        ]
        out[scope] = dict(zip(("success", "family"), min(scored))) if scored else {"success": None}
    out["samples"] = worst_samples(ctx, out["unlearn"].get("family")) if ctx.cfg.eval.generate else []
    return out


def worst_samples(ctx, name: str | None) -> list[dict]:
    """Greedy answers to the first probe of the :data:`WORST_SAMPLES` unlearn items the family recovered most of
    (its prefill, if any, given as the answer's start)."""
    if name is None:
        return []
    family = FAMILIES[name]
    ranked = sorted(ctx.probe_family(family, "unlearn")["per_item"], key=lambda r: (-r["accuracy"], r["index"]))
    first = {}
    for index, probe in probe_items(ctx, family, "unlearn"):
        first.setdefault(index, probe)
    chosen = [(r, first[r["index"]]) for r in ranked[:WORST_SAMPLES]]
    formatter = ctx.probe_formatter
    prompts = [
        (
            formatter.prompt_ids(probe["text"])
            + (ctx.tokenizer(probe["prefill"], add_special_tokens=False)["input_ids"] if probe.get("prefill") else [])
        )[-formatter.max_length :]
        for _, probe in chosen
    ]
    outputs = greedy_generate(
        ctx.model,
        ctx.tokenizer,
        prompts,
        ctx.cfg.eval.generation_batch_size,
        ctx.cfg.eval.max_new_tokens,
        formatter.stop_ids,
    )
    return [
        {
            "family": name,
            "index": record["index"],
            "probe": probe["text"],
            "prefill": probe.get("prefill"),
            "gold": probe["labels"] if not family.choice else probe["options"][probe["gold"]],
            "accuracy": record["accuracy"],
            "generation": ctx.tokenizer.decode(out["token_ids"], skip_special_tokens=True).strip(),
        }
        for (record, probe), out in zip(chosen, outputs)
    ]
