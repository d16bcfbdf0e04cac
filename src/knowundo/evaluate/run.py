"""Evaluating one model (base, fine-tuned adapter or unlearned adapter) with exactly the same inputs.

The registered metrics (:mod:`knowundo.evaluate.metric`) decide what is computed: every split metric per prompt
variant and scope, every model metric once. The expensive per-item passes (teacher-forced scoring, greedy
generation) run once per split and prompt variant and are shared by every metric that needs them. One result
file holds the values, the per-item records, and the report columns the metrics declared.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from knowundo.artifacts import EVAL_RESULT_KIND, hash_json, read_json, relative_path, stored_path, write_json
from knowundo.attacks.probes import ProbeFamily, ProbeWorld
from knowundo.config import Config
from knowundo.data.format import Formatter
from knowundo.data.validate import has_probes
from knowundo.errors import KnowUndoError
from knowundo.evaluate.generation import generate_grouped
from knowundo.evaluate.judge import gibberish_threshold, judge_model, judge_perplexities, record_keys
from knowundo.evaluate.metric import Column, ModelMetric, SplitMetric, check_columns, metrics, reduce_split
from knowundo.evaluate.probing import score_family
from knowundo.evaluate.teacher_forced import evaluate_items
from knowundo.layout import (
    BASE_LABEL,
    CHECKPOINTS_DIR,
    FINETUNE_RECORD,
    ORACLE_LABEL,
    SCOPES,
    SELECTED_RECORD,
    UNLEARN_RECORD,
    VANILLA_LABEL,
    checkpoint_label,
    relearned_adapter,
)
from knowundo.models.load import (
    check_oracle_model,
    is_full_checkpoint,
    load_causal_lm,
    load_checkpoint,
    load_model_config,
    load_tokenizer,
    model_beside,
    swapped_checkpoint,
)
from knowundo.stage import Stage, adapter_hash

PROBE_CONTEXT = 4  # how many times model.max_length an adversarial probe's prompt and answer may take


class EvalContext:
    """One loaded model and its evaluation inputs; the per-item passes run on first request and are cached, so
    metrics that need the same pass share it. Splits: ``unlearn`` / ``retention`` (val), ``general`` (held-out)
    and ``holdout`` (the domain's never-trained instances, if the data has them). ``references``: result files
    of other models of the same domain that metrics compare against (``vanilla``, ``oracle``). ``base_judge``: for
    a model that is not the base model under an adapter (a full checkpoint, an oracle model given as such), a
    callable that makes the base model available as a context manager (loaded beside it, say)."""

    def __init__(
        self,
        model,
        tokenizer,
        stage: Stage,
        adapter: Path | None,
        training: dict | None,
        references: dict[str, dict] | None = None,
        base_judge: Callable[[], AbstractContextManager] | None = None,
    ):
        self.model, self.tokenizer, self.stage, self.base_judge = model, tokenizer, stage, base_judge
        self.cfg, self.domain, self.adapter, self.training = stage.cfg, stage.domain, adapter, training
        self.references = references or {}
        self._teacher_forced: dict[tuple[str, str], dict] = {}
        self._generations: dict[tuple[str, str], list[dict]] = {}
        self._judged: dict[tuple[str, str], list[dict]] = {}
        self._probes: dict[str, list[dict]] = {}
        self._families: dict[tuple[str, str], dict] = {}
        self._thresholds: dict[str, float] = {}
        self._formatters: dict[str, Formatter] = {}

    def items(self, split: str) -> list[dict]:
        """The items of a split; the holdout (membership non-members) as :meth:`robustness_items` chooses."""
        if split == "general":
            return self.stage.general_heldout
        if split == "holdout":
            holdout = self.stage.holdout or []
            return [holdout[i] for i in self.robustness_indices(holdout)]
        return self.stage.val(split)

    def robustness_indices(self, items: list[dict]) -> list[int]:
        """The positions, in order, of the items a robustness evaluation uses: all, or a seeded choice of
        ``eval.robustness_items`` of them (the same for every model of a run, so results compare)."""
        limit = self.cfg.eval.robustness_items
        if not limit or len(items) <= limit:
            return list(range(len(items)))
        return sorted(random.Random(f"{self.cfg.seed}/robustness").sample(range(len(items)), limit))

    def robustness_items(self, split: str) -> list[dict]:
        items = self.items(split)
        return [items[i] for i in self.robustness_indices(items)]

    def robustness_accuracy(self, split: str) -> float:
        """Teacher-forced token accuracy (item-averaged, no system prompt) over :meth:`robustness_items`, from the
        shared pass: the value an attacked model's accuracy on those items is compared with."""
        chosen = set(self.robustness_indices(self.items(split)))
        scores = [r["accuracy"] for r in self.teacher_forced(split)["per_item"] if r["index"] in chosen]
        return sum(scores) / len(scores)

    def score(self, items: list[dict], variant: str = "none") -> dict:
        """A teacher-forced pass over any items (not cached: for probes and attacked models)."""
        return evaluate_items(self.model, self.formatter(variant), items, self.cfg.eval.batch_size, self.cfg.eval.mia_k)

    def swapped_checkpoint(self, checkpoint: Path):
        """The evaluated model with another saved checkpoint in place for a while (:func:`swapped_checkpoint`)."""
        return swapped_checkpoint(self.model, checkpoint)

    def probes(self, scope: str) -> list[dict]:
        """Per item of ``scope`` that the robustness evaluations use (:meth:`robustness_items`; no system prompt),
        from its probe fields: the token accuracy on each paraphrased question, and the truth ratio (TOFU, Maini et
        al. 2024) R = mean over perturbed answers of P(a_pert|q)^(1/|a_pert|) / P(a_para|q)^(1/|a_para|) — the
        geometric-mean token probabilities of wrong answers over that of the paraphrased true one — from log R
        (log-sum-exp of the mean log-probs, so nothing underflows). Items without probe fields give None."""
        if scope not in self._probes:
            items = self.robustness_items(scope)
            asked = [
                (i, {**item, "text": q})
                for i, item in enumerate(items)
                if has_probes(item)
                for q in item["paraphrased_questions"]
            ]
            answered = [
                (i, k, {**item, "labels": answer})
                for i, item in enumerate(items)
                if has_probes(item)
                for k, answer in enumerate([item["paraphrased_answer"], *item["perturbed_answers"]])
            ]
            paraphrased = _scores_by_item(self.score([q for _, q in asked]), [i for i, _ in asked]) if asked else {}
            truth = (
                _scores_by_item(self.score([a for *_, a in answered]), [i for i, _, _ in answered]) if answered else {}
            )
            records = []
            for i, item in enumerate(items):
                if not has_probes(item) or len(truth.get(i, [])) != 1 + len(item["perturbed_answers"]):
                    records.append({"paraphrase_accuracy": None, "truth_ratio": None, "log_truth_ratio": None})
                    continue
                true, *wrong = (s["mean_logprob"] for s in truth[i])
                log_ratio = float(torch.tensor(wrong, dtype=torch.float64).logsumexp(0)) - math.log(len(wrong)) - true
                accuracies = [s["accuracy"] for s in paraphrased.get(i, [])]
                records.append(
                    {
                        "paraphrase_accuracy": sum(accuracies) / len(accuracies) if accuracies else None,
                        "truth_ratio": math.exp(min(log_ratio, 700.0)),
                        "log_truth_ratio": log_ratio,
                    }
                )
            self._probes[scope] = records
        return self._probes[scope]

    @functools.cached_property
    def probe_formatter(self) -> Formatter:
        """The formatter of the adversarial probes (no system prompt): their prompts carry context the benchmark's
        questions do not (answered shots, hints), so they may run to :data:`PROBE_CONTEXT` times ``model.max_length``
        where the model's positions allow."""
        positions = getattr(self.model.config, "max_position_embeddings", None) or self.cfg.model.max_length
        length = max(self.cfg.model.max_length, min(positions, PROBE_CONTEXT * self.cfg.model.max_length))
        return Formatter(self.tokenizer, self.cfg.model.template, length)

    def score_probes(self, items: list[dict]) -> dict:
        """A teacher-forced pass over probe items (:attr:`probe_formatter`); a probe too long for any answer token
        is dropped and counted (all of them dropped is an empty pass, not an error: the family probes nothing)."""
        fitting = [i for i, item in enumerate(items) if self.probe_formatter.encode(item) is not None]
        if not fitting:
            return {"truncated": 0, "dropped": len(items), "per_item": []}
        scored = evaluate_items(
            self.model, self.probe_formatter, [items[i] for i in fitting], self.cfg.eval.batch_size, self.cfg.eval.mia_k
        )
        per_item = [{**record, "index": fitting[record["index"]]} for record in scored["per_item"]]
        return {**scored, "dropped": len(items) - len(fitting), "per_item": per_item}

    @functools.cached_property
    def probe_world(self) -> ProbeWorld:
        """Every item of the domain, for the adversarial probes that draw on other items."""
        return ProbeWorld(self.stage.data, self.cfg.attack.probe_shots)

    def probe_family(self, family: ProbeFamily, scope: str) -> dict:
        """An adversarial probe family's values on ``scope`` (:func:`knowundo.evaluate.probing.score_family`),
        scored once per evaluation."""
        if (family.name, scope) not in self._families:
            self._families[family.name, scope] = score_family(self, family, scope)
        return self._families[family.name, scope]

    def formatter(self, variant: str) -> Formatter:
        """One formatter per prompt variant for the whole evaluation (it remembers what it has tokenized)."""
        if variant not in self._formatters:
            self._formatters[variant] = self.stage.formatter(
                self.tokenizer, self.cfg.eval.system_prompt(variant, self.domain)
            )
        return self._formatters[variant]

    def teacher_forced(self, split: str, variant: str = "none") -> dict:
        """Aggregates and per-item records (accuracy, log-probabilities, exact match) of one split."""
        if (split, variant) not in self._teacher_forced:
            self._teacher_forced[split, variant] = evaluate_items(
                self.model, self.formatter(variant), self.items(split), self.cfg.eval.batch_size, self.cfg.eval.mia_k
            )
        return self._teacher_forced[split, variant]

    def variant_keys(self) -> list[tuple[str, str]]:
        """Every (val split, prompt variant) pair the split metrics read; the generation and judge passes run
        over all of them at once (one length-sorted pass fills larger batches than six small ones)."""
        return [(scope, variant) for variant in self.cfg.eval.prompts for scope in SCOPES]

    def _pending(self, done: dict, split: str, variant: str) -> list[tuple[str, str]]:
        return [(split, variant), *(k for k in self.variant_keys() if k not in done and k != (split, variant))]

    def generations(self, split: str, variant: str = "none") -> list[dict]:
        """Greedy generation per item of one split (``generation`` text, its ``token_ids``, ``hit_limit``)."""
        if (split, variant) not in self._generations:
            keys = self._pending(self._generations, split, variant)
            outputs = generate_grouped(
                self.model,
                [(self.formatter(v), self.items(s)) for s, v in keys],
                self.cfg.eval.generation_batch_size,
                self.cfg.eval.max_new_tokens,
            )
            self._generations.update(zip(keys, outputs))
        return self._generations[split, variant]

    def judges(self) -> list[str]:
        """The fluency judges this evaluation has: the base model always; the oracle when this model is the
        oracle or the oracle's result is a reference."""
        return ["base", *(["oracle"] if self.is_oracle() or ORACLE_LABEL in self.references else [])]

    def is_oracle(self) -> bool:
        return bool((self.training or {}).get("oracle"))

    @contextmanager
    def judge(self, name: str):
        """The judge as a model. The base judge is the base model with no adapter: the evaluated model with its
        adapter switched off, or :attr:`base_judge` (a full checkpoint, a given oracle). The oracle judge is the
        evaluated model if it is the oracle; else the oracle's adapter swapped in (into the base judge where the
        evaluated model has no adapter to swap), or the oracle model given as such, loaded beside."""
        meta = self.references.get(ORACLE_LABEL, {}).get("meta", {})
        given = (meta.get("training") or {}).get("model")
        if name == "base":
            context = self.base_judge() if self.base_judge else judge_model(self.model, "base")
        elif self.is_oracle():
            context = judge_model(self.model, "oracle")
        elif given:
            context = model_beside(self.cfg, given)
        elif self.base_judge:
            context = _swapped_into(self.base_judge, Path(meta["adapter"]))
        else:
            context = judge_model(self.model, "oracle", Path(meta["adapter"]))
        with context as model:
            yield model

    def judged(self, split: str, variant: str = "none") -> list[dict]:
        """Per item of one split, per judge: the judge perplexity of its generation and whether it is gibberish
        (:mod:`knowundo.evaluate.judge`); None for an empty generation."""
        if (split, variant) not in self._judged:
            keys = self._pending(self._judged, split, variant)
            owners = [(key, i) for key in keys for i in range(len(self.items(key[0])))]
            # a question answered alike under several prompt variants is judged once (the judge sees no prompt)
            pairs = [(self.items(s)[i]["text"], tuple(self.generations(s, v)[i]["token_ids"])) for (s, v), i in owners]
            unique = list(dict.fromkeys(pairs))
            position = {pair: n for n, pair in enumerate(unique)}
            records = {key: [{} for _ in self.items(key[0])] for key in keys}
            for name in self.judges():
                threshold = self.gibberish_threshold(name)
                with self.judge(name) as model:
                    perplexities = judge_perplexities(
                        model,
                        self.formatter("none"),
                        [q for q, _ in unique],
                        [list(a) for _, a in unique],
                        self.cfg.eval.batch_size,
                    )
                ppl_key, flag_key = record_keys(name)
                for (key, i), pair in zip(owners, pairs):
                    p = perplexities[position[pair]]
                    records[key][i].update({ppl_key: p, flag_key: None if p is None else p > threshold})
            self._judged.update(records)
        return self._judged[split, variant]

    def gibberish_threshold(self, judge: str = "base") -> float:
        """Calibrated once per judge on the gold val answers of both scopes (and only on them). Judges and gold
        answers are the same for every model of a domain, so the oracle's result, where it is a reference,
        already holds both thresholds."""
        known = self.references.get(ORACLE_LABEL, {}).get("fluency_judge", {}).get(judge, {}).get("threshold")
        if judge not in self._thresholds and known is not None:
            self._thresholds[judge] = float(known)
        if judge not in self._thresholds:
            tokenizer = self.tokenizer
            items = [item for scope in SCOPES for item in self.items(scope)]
            with self.judge(judge) as model:
                gold = judge_perplexities(
                    model,
                    self.formatter("none"),
                    [i["text"] for i in items],
                    [tokenizer(i["labels"], add_special_tokens=False)["input_ids"] for i in items],
                    self.cfg.eval.batch_size,
                )
            self._thresholds[judge] = gibberish_threshold([p for p in gold if p is not None])
        return self._thresholds[judge]


@contextmanager
def _swapped_into(base_judge: Callable[[], AbstractContextManager], adapter: Path):
    with base_judge() as base, swapped_checkpoint(base, adapter) as judged:
        yield judged


def _scores_by_item(scored: dict, owners: list[int]) -> dict[int, list[dict]]:
    """Per-item scores of a pass over derived items, grouped by the val item each came from (in order; items
    the formatter dropped are missing)."""
    grouped: dict[int, list[dict]] = defaultdict(list)
    for record in scored["per_item"]:
        grouped[owners[record["index"]]].append(record)
    return grouped


def evaluate_scope(ctx: EvalContext, split_metrics: list[SplitMetric], scope: str, variant: str) -> dict:
    """One val split under one prompt variant: the passes its metrics need, their per-item values, the
    reductions over the split and over each category."""
    chosen = [m for m in split_metrics if scope in m.scopes]
    passes = set().union(*(m.needs for m in chosen)) if chosen else set()
    scored = ctx.teacher_forced(scope, variant)
    items = ctx.items(scope)
    records = [dict(r) for r in scored["per_item"]]
    if "generation" in passes:
        generated = ctx.generations(scope, variant)
        for record in records:
            record.update({key: generated[record["index"]][key] for key in ("generation", "hit_limit")})
    if "judge" in passes:
        judged = ctx.judged(scope, variant)
        for record in records:
            record.update(judged[record["index"]])
    for metric in chosen:
        if metric.per_item is not None:
            for record in records:
                record.update(metric.per_item(items[record["index"]], record))
    categories = defaultdict(list)
    for record in records:
        categories[record["category"] or "-"].append(record)
    return {
        "truncated": scored["truncated"],
        "dropped": scored["dropped"],
        **reduce_split(chosen, records, scope),
        "by_category": {c: reduce_split(chosen, r, scope) for c, r in sorted(categories.items())},
        "per_item": records,
    }


def evaluate_variant(ctx: EvalContext, split_metrics: list[SplitMetric], variant: str) -> dict:
    """Both val splits under one prompt variant, plus the values metrics derive across the two."""
    result = {"system_prompt": ctx.cfg.eval.system_prompt(variant, ctx.domain)}
    for scope in SCOPES:
        result[scope] = evaluate_scope(ctx, split_metrics, scope, variant)
    for metric in split_metrics:
        if metric.summary is not None:
            result.update(metric.summary(result))
    return result


def describe_adapter(adapter: Path | None) -> tuple[str, dict | None]:
    """(default label, training summary) from the stage record beside an adapter: the run's label for an
    unlearning run (``@N`` for its checkpoint at step N), ``vanilla`` for a fine-tune (``oracle`` for one on the
    Retention Scope only), ``base`` for none."""
    if adapter is None:
        return BASE_LABEL, None
    run_dir, step = adapter.parent, None
    if run_dir.name == CHECKPOINTS_DIR and adapter.name.startswith("checkpoint-"):
        run_dir, step = run_dir.parent, int(adapter.name.rsplit("-", 1)[1])
    if (run_dir / UNLEARN_RECORD).is_file():
        record = read_json(run_dir / UNLEARN_RECORD)
        keys = (
            "method",
            "label",
            "method_args",
            "retain",
            "region",
            "steps",
            "seconds_per_step",
            "peak_memory_mb",
            "start_memory_mb",
            "trainable_parameters",
            "full_parameters",
            "optimized_parameters",
            "learning_rate",
            "stopped_early",
        )
        label = record["label"]
        return (
            label if step is None else checkpoint_label(label, step),
            {
                "stage": "unlearn",
                "checkpoint_step": step,
                "seed": record.get("seed"),
                **{k: record.get(k) for k in keys},
                "selected": selected_checkpoint(adapter),
            },
        )
    if (run_dir / FINETUNE_RECORD).is_file():
        record = read_json(run_dir / FINETUNE_RECORD)
        label = ORACLE_LABEL if record.get("oracle") else VANILLA_LABEL
        return label, {
            "stage": "finetune",
            "seed": record.get("seed"),
            "oracle": bool(record.get("oracle")),
            "wall_seconds": record.get("wall_seconds"),
            "trainable_parameters": record.get("trainable_parameters"),
            "target_accuracy": record.get("target_accuracy"),
            "target_reached": record.get("target_reached"),
        }
    return run_dir.name, None


def selected_checkpoint(adapter: str | Path | None) -> dict | None:
    """How ``unlearn.select`` chose ``adapter`` as the checkpoint its run reports (None when it did not)."""
    if adapter is None:
        return None
    adapter = Path(adapter)
    run_dir = adapter.parent.parent if adapter.parent.name == CHECKPOINTS_DIR else adapter.parent
    record = run_dir / SELECTED_RECORD
    if not record.is_file():
        return None
    selected = read_json(record)
    if stored_path(selected["adapter"], run_dir).resolve() != adapter.resolve():
        return None
    return {k: selected[k] for k in ("rule", "step", "steps", "reason")}


# the layout of a result file: raised when a result gains a field its readers need (2: lm-eval's answers per
# question), so that a cached result without it is recomputed rather than shown as missing
RESULT_FORMAT = 2


def eval_key(
    cfg: Config,
    domain: str,
    adapter: str | Path | None,
    label: str | None,
    references: dict[str, str | Path] | None = None,
    oracle_model: str | None = None,
) -> str:
    """Everything a result depends on: the adapter's weights (and those of its relearned copy) or the oracle model
    evaluated, the data, the model, the eval and attack settings, the registered metrics and the reference results
    compared against; computed after checking the prompt variants, the data, the adapter and the references
    (before any work)."""
    cfg.eval.check_prompts(domain)
    stage = Stage("eval", cfg, domain)
    relearned = relearned_adapter(adapter) if adapter is not None else None
    loaded = load_references(stage, references)
    return stage.key(
        stage.data,
        ("eval", "attack"),
        label=label,
        adapter=adapter_hash(adapter),
        relearned=adapter_hash(relearned) if relearned is not None and relearned.is_dir() else None,
        holdout=hash_json(stage.holdout),
        references={name: result["meta"]["key"] for name, result in loaded.items()},
        oracle_model=oracle_identity(stage.cfg, oracle_model) if oracle_model else None,
        **({"selected": chosen} if (chosen := selected_checkpoint(adapter)) else {}),  # absent: earlier keys hold
        metrics=sorted(m.name for m in metrics()),
        result_format=RESULT_FORMAT,
    )


def oracle_identity(cfg: Config, name: str) -> dict:
    """What identifies an oracle model given by name, checked first (:func:`check_oracle_model`): a local directory
    by its weights' hash, a Hub id by its name."""
    check_oracle_model(cfg, name)
    local = Path(name).expanduser()
    return {"weights": adapter_hash(local)} if local.is_dir() else {"hub": name}


def _columns(metric, value) -> list[Column]:
    dynamic = metric.columns_for(value) if isinstance(metric, ModelMetric) and metric.columns_for else ()
    return [
        dataclasses.replace(c, level="model") if isinstance(metric, ModelMetric) else c
        for c in (*metric.columns, *dynamic)
    ]


REFERENCE_ROLES = {ORACLE_LABEL: True, VANILLA_LABEL: False}  # name -> whether its fine-tune is the oracle's


def load_references(stage: Stage, references: dict[str, str | Path] | None) -> dict[str, dict]:
    """The result files a model is compared against, each checked (:func:`check_reference`)."""
    loaded = {}
    for name, path in (references or {}).items():
        try:
            result = read_json(path)
        except (OSError, ValueError):
            raise KnowUndoError(f"{path}: the {name} reference is not a readable result file") from None
        meta = result.get("meta") if isinstance(result, dict) else None
        if isinstance(meta, dict) and meta.get("adapter"):  # stored relative to the result file
            meta["adapter"] = str(stored_path(meta["adapter"], Path(path).parent))
        loaded[name] = check_reference(stage, name, result, str(path))
    return loaded


def check_reference(stage: Stage, name: str, result: dict, where: str) -> dict:
    """A result compared against, checked to be an evaluation of the right model (an oracle, or a fine-tune that
    is not one, or — as the vanilla reference — a model evaluated as given, which already knew its data) on the same
    domain and data."""
    meta = result.get("meta") if isinstance(result, dict) else None
    training = (meta or {}).get("training") or {}
    if (
        not isinstance(meta, dict)
        or result.get("kind") != EVAL_RESULT_KIND
        or "key" not in meta
        or result.get("domain") != stage.domain
    ):
        raise KnowUndoError(
            f"{where}: not an evaluation result of the {stage.domain} domain (needed as the {name} reference)"
        )
    given = (name == VANILLA_LABEL and not training and result.get("label") == VANILLA_LABEL) or (
        name == ORACLE_LABEL and training.get("stage") == "given" and bool(training.get("oracle"))
    )
    if not given and (
        name not in REFERENCE_ROLES
        or training.get("stage") != "finetune"
        or bool(training.get("oracle")) != REFERENCE_ROLES[name]
    ):
        raise KnowUndoError(
            f"{where}: not the evaluation of {'an oracle' if REFERENCE_ROLES.get(name) else 'a'} "
            f"fine-tuned model (needed as the {name} reference)"
        )
    if meta.get("data_hash") != hash_json(stage.data):
        raise KnowUndoError(f"{where}: the {name} reference was evaluated on other data")
    adapter = meta.get("adapter")
    if name == ORACLE_LABEL and stage.cfg.eval.generate:  # the second fluency judge
        if training.get("stage") == "given":
            load_model_config(training["model"], stage.cfg.model.trust_remote_code)
        elif not (adapter and Path(adapter).is_dir()):
            raise KnowUndoError(f"{where}: the oracle's adapter {adapter} (the second fluency judge) is not there")
    return result


def evaluate_checkpoint(
    cfg: Config,
    domain: str,
    adapter: str | Path | None = None,
    out_file: str | Path | None = None,
    label: str | None = None,
    progress: bool = True,
    references: dict[str, str | Path] | None = None,
    oracle_model: str | None = None,
) -> dict:
    """Every registered metric on one saved model (:func:`evaluate_loaded`): ``cfg.model``, with ``adapter`` (a
    LoRA adapter, or a full checkpoint from ``unlearn.full_parameters``) if given; or ``oracle_model`` (a Hub id or
    directory: a model that never saw the Unlearn Scope, trained elsewhere) as the domain's oracle. The result is
    written to ``out_file`` if given. ``references``: result files of the ``vanilla`` and ``oracle`` models of the
    domain, for the metrics that compare."""
    stage = Stage("eval", cfg, domain)
    adapter = Path(adapter) if adapter is not None else None
    if oracle_model and adapter is not None:
        raise KnowUndoError("an oracle model is evaluated as given: no adapter on it")
    key = eval_key(cfg, domain, adapter, label, references, oracle_model)
    # a model that is not the base under an adapter: the base judge is loaded beside it
    beside = bool(oracle_model) or (adapter is not None and is_full_checkpoint(adapter))
    if oracle_model:
        default_label, training = ORACLE_LABEL, given_oracle(oracle_model)
        model, tokenizer = load_causal_lm(oracle_model, cfg), load_tokenizer(cfg)
    else:
        default_label, training = describe_adapter(adapter)
        model, tokenizer = load_checkpoint(cfg, adapter)
    result = evaluate_loaded(
        model,
        tokenizer,
        stage,
        label or default_label,
        load_references(stage, references),
        key=key,
        adapter=adapter,
        training=training,
        progress=progress,
        reference_files={name: str(path) for name, path in (references or {}).items()},
        base_judge=(lambda: model_beside(cfg)) if beside else None,
    )
    if out_file is not None:  # the file links relative to itself; the result returned keeps the paths as given
        meta, home = result["meta"], Path(out_file).parent
        stored = {
            "adapter": relative_path(adapter, home) if adapter is not None else None,
            "references": {name: relative_path(path, home) for name, path in meta["references"].items()},
        }
        write_json(out_file, {**result, "meta": {**meta, **stored}})
    return result


def given_oracle(name: str) -> dict:
    """The training summary of an oracle model given as such (trained elsewhere, on the Retention Scope alone): a
    local one by its absolute path, which holds wherever the run directory or the working directory moves."""
    local = Path(name).expanduser()
    return {"stage": "given", "oracle": True, "model": str(local.resolve()) if local.is_dir() else name}


def evaluate_loaded(
    model,
    tokenizer,
    stage: Stage,
    label: str,
    references: dict[str, dict] | None = None,
    key: str | None = None,
    adapter: Path | None = None,
    training: dict | None = None,
    progress: bool = True,
    reference_files: dict[str, str] | None = None,
    base_judge: Callable[[], AbstractContextManager] | None = None,
) -> dict:
    """Every registered metric on a model in memory: the split metrics per prompt variant and scope, the model
    metrics once. ``references``: the checked results of the domain's ``vanilla`` and ``oracle`` models;
    ``adapter`` / ``training``: where the model was saved and how it was trained, for the metrics that read them
    (checkpoint curves, the relearning attack); ``base_judge``: see :class:`EvalContext`. ``meta.seconds``: each
    prompt variant's and model metric's wall time (a shared pass counts where it first ran: the first variant's)
    and the sum of the robustness metrics', which the time budget of the default run (``benchmarks/default_run.py``)
    counts apart from the paper's system."""
    cfg = stage.cfg
    cfg.eval.check_prompts(stage.domain)
    ctx = EvalContext(model, tokenizer, stage, adapter, training, references or {}, base_judge)
    split_metrics = [m for m in metrics() if isinstance(m, SplitMetric) and m.enabled(cfg.eval)]
    model_metrics = [m for m in metrics() if isinstance(m, ModelMetric) and m.enabled(ctx)]
    result = {"kind": EVAL_RESULT_KIND, "label": label, "domain": stage.domain, "prompts": {}}
    if cfg.data.request:  # a model after one of run.requests, on the items that request's view reports
        result["request"] = {"index": cfg.data.request, "of": cfg.run.requests}
    columns = [c for m in split_metrics for c in _columns(m, None)]
    parts = [*(("prompt", variant) for variant in cfg.eval.prompts), *(("metric", m) for m in model_metrics)]
    timed: dict[str, float] = {}
    with tqdm(parts, desc=f"eval {label}", disable=not progress, leave=False) as bar:
        for kind, part in bar:
            name = f"prompt {part}" if kind == "prompt" else part.name
            bar.set_postfix_str(name)
            started = time.perf_counter()
            if kind == "prompt":
                result["prompts"][part] = evaluate_variant(ctx, split_metrics, part)
            else:
                result[part.name] = part.compute(ctx)
                columns += _columns(part, result[part.name])
            timed[name] = round(time.perf_counter() - started, 3)
    seconds = {"parts": timed, "robustness": round(sum(timed[m.name] for m in model_metrics if m.robustness), 3)}
    result["columns"] = [c.to_json() for c in check_columns(columns)]
    result["tables"] = {name: title for m in (*split_metrics, *model_metrics) for name, title in m.tables.items()}
    result["meta"] = stage.record(
        key,
        stage.data,
        adapter=str(adapter) if adapter else None,
        adapter_hash=adapter_hash(adapter),
        training=training,
        seconds=seconds,
        references=reference_files or {},
    )
    return result
