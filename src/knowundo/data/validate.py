"""Validation of KnowUnDo-format split files: one-line errors that name the file and the item."""

from __future__ import annotations

from typing import Any

from knowundo.errors import KnowUndoError
from knowundo.layout import SPLITS


def validate_scope(obj: Any, where: str) -> dict[str, list[dict]]:
    """Check one ``<domain>/<scope>.json`` object ``{"train": [...], "val": [...]}`` and return it.

    Extra keys on items (``category``, ``instance``, ``facts``, the probes of :func:`validate_item`) are kept
    untouched.
    """
    if not isinstance(obj, dict):
        raise KnowUndoError(f"{where}: expected one JSON object with 'train' and 'val' lists, got {type(obj).__name__}")
    for split in SPLITS:
        if split not in obj:
            raise KnowUndoError(f"{where}: missing the '{split}' list")
        items = obj[split]
        if not isinstance(items, list):
            raise KnowUndoError(f"{where}: '{split}' must be a list, got {type(items).__name__}")
        if not items:
            raise KnowUndoError(f"{where}: '{split}' is empty")
        for index, item in enumerate(items):
            validate_item(item, f"{where}: {split} item {index}")
    check_no_repeats(obj["train"], obj["val"], f"{where}: val")
    return {split: obj[split] for split in SPLITS}


def check_no_repeats(train: list[dict], val: list[dict], where: str) -> None:
    """Val questions must not repeat train questions: val measures whether unlearning generalises past them."""
    asked = {item["text"].strip() for item in train}
    for index, item in enumerate(val):
        if item["text"].strip() in asked:
            raise KnowUndoError(f"{where} item {index} repeats a train question: {item['text'][:60]!r}")


def validate_item(item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise KnowUndoError(f"{where}: expected an object with 'text' and 'labels', got {type(item).__name__}")
    for key in ("text", "labels"):
        if key not in item:
            raise KnowUndoError(f"{where}: missing '{key}'")
        if not isinstance(item[key], str):
            raise KnowUndoError(f"{where}: '{key}' must be a string, got {type(item[key]).__name__}")
        if not item[key].strip():
            raise KnowUndoError(f"{where}: '{key}' is empty")
    for key in ("category", "instance"):
        if item.get(key) is not None and not isinstance(item[key], str):
            raise KnowUndoError(f"{where}: '{key}' must be a string, got {type(item[key]).__name__}")
    for key in ("facts", "distractors"):  # protected values (leak rate) / multiple-choice wrong values
        value = item.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise KnowUndoError(f"{where}: '{key}' must be a list of strings")
    for key in PROBE_FIELDS:
        value = item.get(key)
        if key == "paraphrased_answer":
            if value is not None and not _text(value):
                raise KnowUndoError(f"{where}: '{key}' must be a non-empty string")
        elif value is not None and not (isinstance(value, list) and value and all(_text(v) for v in value)):
            raise KnowUndoError(f"{where}: '{key}' must be a non-empty list of non-empty strings")


# Optional probes (the bundled val items have them; external data may not): questions asking the same in other
# words, the gold answer in other words, wrong answers in the paraphrased answer's form.
PROBE_FIELDS = ("paraphrased_questions", "paraphrased_answer", "perturbed_answers")


def has_probes(item: dict) -> bool:
    return all(item.get(field) for field in PROBE_FIELDS)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def validate_items(obj: Any, where: str) -> list[dict]:
    """A plain non-empty list of items (the general-knowledge set, a holdout and user-supplied retain data)."""
    if not isinstance(obj, list) or not obj:
        raise KnowUndoError(f"{where}: expected a non-empty JSON list of items")
    for index, item in enumerate(obj):
        validate_item(item, f"{where}: item {index}")
    return obj
