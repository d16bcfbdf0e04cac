"""Question/answer items from anywhere: a ``datasets.Dataset``, a list of dicts, or a JSON, JSONL, CSV or Parquet
file, with their fields renamed to knowundo's (``text``: the question, ``labels``: the answer, and the optional
probe fields) by a :class:`Fields` mapping, so TOFU- or MUSE-shaped data loads without rewriting.

Files are read by the ``datasets`` library's own builders; every item then goes through the same validation as the
bundled data (:mod:`knowundo.data.validate`).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knowundo.data.validate import validate_items
from knowundo.errors import KnowUndoError

# the datasets builder that reads each file suffix
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class Fields:
    """Which field of the source holds each of knowundo's item fields (None: the source has none). A probe field
    that holds one string where knowundo keeps a list (TOFU's ``paraphrased_question``) becomes a list of one."""

    text: str = "text"
    labels: str = "labels"
    category: str | None = "category"
    instance: str | None = "instance"
    paraphrased_questions: str | None = "paraphrased_questions"
    paraphrased_answer: str | None = "paraphrased_answer"
    perturbed_answers: str | None = "perturbed_answers"
    facts: str | None = "facts"
    distractors: str | None = "distractors"

    @classmethod
    def of(cls, fields: Fields | dict | str | None) -> Fields:
        """A mapping from a :class:`Fields`, a dict of overrides (``{"text": "question"}``) or a known layout's name
        (:data:`LAYOUTS`)."""
        if fields is None:
            return cls()
        if isinstance(fields, Fields):
            return fields
        if isinstance(fields, str):
            if fields not in LAYOUTS:
                raise KnowUndoError(f"unknown field layout {fields!r}; choose one of {', '.join(LAYOUTS)}")
            return LAYOUTS[fields]
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(fields) - known):
            raise KnowUndoError(
                f"unknown item field {unknown[0]!r} in the field mapping; knowundo's fields: {', '.join(sorted(known))}"
            )
        return cls(**fields)

    def apply(self, row: dict) -> dict:
        """One source row as a knowundo item; source fields not mapped are kept under their own names."""
        mapped = {name: source for name, source in dataclasses.asdict(self).items() if source is not None}
        taken = set(mapped.values())
        item = {key: value for key, value in row.items() if key not in taken and value is not None}
        for name, source in mapped.items():
            value = row.get(source)
            if value is None:
                continue
            if name in LIST_FIELDS and isinstance(value, str):
                value = [value]
            item[name] = value
        return item


LIST_FIELDS = ("paraphrased_questions", "perturbed_answers", "facts", "distractors")

# the field layouts of other benchmarks' question/answer files (the content is the user's)
LAYOUTS = {
    "knowundo": Fields(),
    # TOFU: question, answer, paraphrased_question (one), paraphrased_answer, perturbed_answer (a list)
    "tofu": Fields(
        text="question",
        labels="answer",
        paraphrased_questions="paraphrased_question",
        perturbed_answers="perturbed_answer",
    ),
    # MUSE's knowledge-memorization QA sets: question, answer
    "muse": Fields(text="question", labels="answer"),
}


def load_items(source: Any, fields: Fields | dict | str | None = None, where: str | None = None) -> list[dict]:
    """Validated knowundo items from a ``datasets.Dataset``, an iterable of dicts or a file path (JSON list, JSON
    lines, CSV, Parquet), renamed by ``fields``. One-line errors name the source and the item."""
    mapping = Fields.of(fields)
    rows, where = _rows(source, where)
    items = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise KnowUndoError(f"{where}: item {index} is not a mapping but {type(row).__name__}")
        items.append(mapping.apply(row))
    return validate_items(items, where)


def _rows(source: Any, where: str | None) -> tuple[Iterable, str]:
    import datasets

    if isinstance(source, datasets.Dataset):
        return source, where or f"dataset of {source.num_rows} rows"
    if isinstance(source, (str, Path)):
        return _file_rows(Path(source)), where or str(source)
    if isinstance(source, datasets.DatasetDict):
        raise KnowUndoError(f"{where or 'the data'}: a DatasetDict holds several splits; pass one (e.g. ds['train'])")
    if isinstance(source, (list, tuple)):
        return source, where or f"list of {len(source)} items"
    raise KnowUndoError(
        f"{where or 'the data'}: expected a datasets.Dataset, a list of dicts or a file path, got "
        f"{type(source).__name__}"
    )


def _file_rows(path: Path) -> datasets.Dataset:  # noqa: F821
    import datasets

    if not path.is_file():
        raise KnowUndoError(f"{path}: file not found")
    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise KnowUndoError(f"{path}: unknown file type {path.suffix!r}; use one of {', '.join(FILE_BUILDERS)}")
    try:  # into memory, through a cache of its own (a local file can change under its path; nothing is left)
        with tempfile.TemporaryDirectory(prefix="knowundo-items-") as cache:
            return datasets.load_dataset(
                builder, data_files=str(path), split="train", cache_dir=cache, keep_in_memory=True
            )
    except Exception as exc:  # the builders raise many types for a malformed file
        raise KnowUndoError(
            f"{path}: cannot read it as {builder} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"
        ) from None
