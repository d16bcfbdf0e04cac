"""General capability outside both scopes: the bundled multiple-choice task and any lm-evaluation-harness task
by name, run through lm-eval's Python API on the in-memory model (base, fine-tuned or unlearned alike)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from knowundo.artifacts import hash_json
from knowundo.data.format import resolve_template
from knowundo.errors import KnowUndoError
from knowundo.placement import describe

MC_TASK = "knowundo_general_mc"


def _replace_last(text: str, old: str, new: str) -> str:
    head, sep, tail = text.rpartition(old)
    return head + new + tail if sep else text


def multiple_choice_docs(items: list[dict], seed: int) -> list[dict]:
    """One 4-way question per general item with ``facts`` and ``distractors``: the choices are the gold answer
    and the same sentence with the fact swapped for a same-kind wrong value (another capital, a nearby number),
    so a model must know the fact, not spot an odd one out. Choice order is shuffled from ``seed``."""
    rng = random.Random(seed)
    docs = []
    for item in items:
        facts, distractors = item.get("facts") or [], item.get("distractors") or []
        if not facts or not distractors or facts[0] not in item["labels"]:
            continue
        choices = [item["labels"]] + [_replace_last(item["labels"], facts[0], d) for d in distractors]
        order = list(range(len(choices)))
        rng.shuffle(order)
        docs.append({"question": item["text"], "choices": [choices[i] for i in order], "gold": order.index(0)})
    return docs


def mc_task_config(data_file: Path, template: str) -> dict:
    """The task as lm-eval config: a local JSON-lines file, scored by log-likelihood of each full answer.
    With the plain template the context is ``question + "\\n\\n"`` exactly as in every other metric."""
    return {
        "task": MC_TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{question}}\n\n" if template == "plain" else "{{question}}",
        "target_delimiter": "",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{gold}}",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1},
    }


@contextlib.contextmanager
def _quiet():
    """No output from lm-eval: its Python messages, and its child processes' (it runs `git describe`, whose error
    outside a git checkout would reach the terminal), by pointing file descriptor 2 at /dev/null meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(io.StringIO()):
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@lru_cache(maxsize=2)
def _task_manager(*, named: bool):
    """lm-eval's task manager, built once per process. ``named``: with the index of lm-eval's own task files
    (seconds to build), needed to load a task by name; the bundled task is an inline config and needs none.
    Keyword-only, so every caller hits one cache entry (lru_cache keys ``f(True)`` and ``f(named=True)`` apart)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=named)


def load_task(name: str) -> None:
    """Load one lm-eval task by name with its data, as a run would (offline: from the local Hugging Face cache);
    a one-line error if it is unknown or its data cannot be loaded."""
    from lm_eval.tasks import get_task_dict

    manager = _task_manager(named=True)
    if name not in manager.all_tasks:
        raise KnowUndoError(f"unknown lm-eval task {name!r}")
    try:
        with _quiet():
            get_task_dict([name], manager)
    except Exception as exc:  # datasets / the Hub raise many types
        raise KnowUndoError(
            f"lm-eval task {name!r} cannot load its data ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); offline, its dataset must be "
            f"in the local Hugging Face cache"
        ) from None


# what the datasets library and the Hub client raise for a dataset they cannot reach or find
DATA_ERRORS = (
    "DatasetNotFoundError",
    "DataFilesNotFoundError",
    "ConnectionError",
    "OfflineModeIsEnabled",
    "LocalEntryNotFoundError",
    "HFValidationError",
    "FileNotFoundError",
    "HfHubHTTPError",
)


@contextlib.contextmanager
def _ties_kept(model):
    """lm-eval calls ``tie_weights()`` on the model it is given; on a peft model that trains embedding rows
    (``lora.train_embeddings``) the embeddings are a wrapper without a ``weight`` parameter for transformers to tie,
    and the call fails. The model's weights are already tied as it trained them, so that call is skipped meanwhile
    (an instance attribute over the method, removed after)."""
    model.tie_weights = lambda *args, **kwargs: None
    try:
        yield
    finally:
        del model.tie_weights


def run_lm_eval(
    model, tokenizer, tasks: list, batch_size: int, seed: int, chat: bool, limit: int = 0, verbose: bool = False
) -> dict:
    """{task: {metric: value}} from lm-eval on the model object (no reload, no Hub). Each task asked for (a group:
    over its subtasks' questions) also gets ``correct``, 1 / 0 per question in a fixed order, and ``questions``, a
    hash of those questions, so that two models can be compared question by question (where the task scores 0 / 1
    accuracy per question)."""
    from lm_eval.models.huggingface import HFLM

    logging.getLogger("lm-eval").setLevel(logging.INFO if verbose else logging.ERROR)
    logging.getLogger("lm_eval").setLevel(logging.INFO if verbose else logging.ERROR)
    quiet = contextlib.nullcontext() if verbose else _quiet()
    was_training = model.training
    model.eval()
    try:
        with quiet, _ties_kept(model):
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=describe())
            results = _evaluate(lm, tasks, seed, chat, limit)
    except Exception as exc:  # lm-eval raises many types for a task it cannot find or download
        names = [t["task"] if isinstance(t, dict) else t for t in tasks]
        cause = (
            " (offline, a named task needs its dataset in the local Hugging Face cache)"
            if type(exc).__name__ in DATA_ERRORS
            else ""
        )
        raise KnowUndoError(
            f"lm-eval could not run {', '.join(names)}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}{cause}"
        ) from None
    finally:
        model.train(was_training)
    table = {}
    for task, metrics in results["results"].items():
        table[task] = {
            name.split(",")[0]: 100.0 * value
            for name, value in metrics.items()
            if isinstance(value, (int, float)) and name != "sample_len" and not name.split(",")[0].endswith("_stderr")
        }
    for task, leaves in _top_level_tasks(results).items():
        answers = [per_question_scores(results.get("samples", {}).get(leaf, [])) for leaf in leaves]
        if all(answers):
            table[task].update(
                correct=[c for correct, _ in answers for c in correct],
                questions=hash_json([digest for _, digest in answers]),
            )
    return table


def per_question_scores(samples: list[dict]) -> tuple[list[int], str] | None:
    """A task's logged samples as (1 / 0 per document in ``doc_id`` order, a hash of the documents in that order),
    from its first filter only (a task logs one sample per document and filter); None unless every document has
    one 0 / 1 ``acc``."""
    if not samples:
        return None
    first = samples[0]["filter"]
    kept = sorted((s for s in samples if s["filter"] == first), key=lambda s: s["doc_id"])
    if len({s["doc_id"] for s in kept}) != len(kept) or any(s.get("acc") not in (0, 1) for s in kept):
        return None
    return [int(s["acc"]) for s in kept], hash_json([s["doc_hash"] for s in kept])


def _top_level_tasks(results: dict) -> dict[str, list[str]]:
    """Each task asked for, with the leaf tasks whose questions it is made of (a group such as mmlu: its subtasks,
    nested groups unrolled; a plain task: itself)."""
    groups = results.get("group_subtasks", {})
    children = {child for members in groups.values() for child in members}

    def leaves(task: str) -> list[str]:
        return [leaf for member in groups[task] for leaf in leaves(member)] if groups.get(task) else [task]

    return {task: leaves(task) for task in results["results"] if task not in children}


def _evaluate(lm, tasks: list, seed: int, chat: bool, limit: int) -> dict:
    """What ``lm_eval.simple_evaluate`` does for an in-memory model — seed everything, load the tasks (zero-shot
    unless a task's config says otherwise), ``lm_eval.evaluator.evaluate`` — without the run metadata it adds
    after (a ``pip list`` in a subprocess on every call); our own record carries the
    library versions."""
    import numpy
    import torch
    from lm_eval.evaluator import evaluate

    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)
    loaded = _task_manager(named=any(isinstance(t, str) for t in tasks)).load(tasks)
    for task in loaded["tasks"].values():
        if task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=seed)
    return evaluate(
        lm=lm,
        task_dict=loaded,
        limit=limit or None,
        bootstrap_iters=0,
        log_samples=True,
        apply_chat_template=chat,
        verbosity="ERROR",
    )


def general_capability(model, tokenizer, heldout: list[dict], cfg) -> dict:
    """The bundled MC task (``eval.general_mc``) and ``eval.general_tasks`` in one lm-eval call."""
    tasks: list = list(cfg.eval.general_tasks)
    template = resolve_template(cfg.model.template, tokenizer)
    with tempfile.TemporaryDirectory(prefix="knowundo-mc-") as tmp:
        if cfg.eval.general_mc:
            docs = multiple_choice_docs(heldout, cfg.seed)
            if not docs:
                raise KnowUndoError(
                    "eval.general_mc: the general held-out set has no item with facts and "
                    "distractors; set eval.general_mc=false"
                )
            data_file = Path(tmp) / "general_mc.jsonl"
            data_file.write_text("".join(json.dumps(d) + "\n" for d in docs))
            tasks.insert(0, mc_task_config(data_file, template))
        if not tasks:
            return {}
        return run_lm_eval(
            model,
            tokenizer,
            tasks,
            cfg.eval.batch_size,
            cfg.seed,
            chat=template == "chat",
            limit=cfg.eval.general_limit,
        )
