"""Adversarial probes: the val questions asked in ways that bring "forgotten" knowledge back in the literature —
RWKU's adversarial question types (Jin et al. 2024, arXiv 2406.10890: prefix injection, role-play, reverse query,
background hints, in-context facts, cross-lingual, fill-in-the-blank, multiple choice), prompts that mix a forget
and a retain question (SepS, 2025) and multi-hop questions that reach a fact through another one.

A :class:`ProbeFamily` turns one val item into probe items built from our own templates and the item's fields
(and the other items of the domain: :class:`ProbeWorld`), each scored teacher-forced on the item's own gold answer
(or, for a choice family, by which option the model finds likeliest). The draws of a family come from their own
seeded stream per item, so adding a family moves no other; the benchmark items are never changed. A family whose
fields an item lacks gives that item no probe ("-" when no item has any). Each family is registered by its own
metric file (``evaluate/metrics/probe_*.py``), scored by :mod:`knowundo.evaluate.probing`.
"""

from __future__ import annotations

import functools
import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from knowundo.layout import SCOPES

BLANK = "___"


@dataclass(frozen=True)
class ProbeFamily:
    """One way of asking: ``build(item, scope, world, rng)`` returns the item's probe items (``text`` the prompt,
    ``labels`` the scored answer, optionally ``prefill``: unscored words the answer starts with; for a ``choice``
    family ``options``, the candidate answers, and ``gold``, the true one's index). ``header`` names its report
    columns."""

    name: str
    header: str
    doc: str
    build: Callable[[dict, str, ProbeWorld, random.Random], list[dict]]
    choice: bool = False


FAMILIES: dict[str, ProbeFamily] = {}


def register_family(family: ProbeFamily) -> ProbeFamily:
    previous = FAMILIES.get(family.name)
    if previous is not None and previous != family:
        raise TypeError(f"two probe families are named {family.name!r}")
    FAMILIES[family.name] = family
    return family


class ProbeWorld:
    """What probes may draw on besides the item: every item (train and val) of both scopes of the domain, by
    instance and by category; ``shots``: how many answered questions an in-context probe shows."""

    def __init__(self, data: dict[str, dict[str, list[dict]]], shots: int):
        self.items = {scope: [item for split in data[scope].values() for item in split] for scope in SCOPES}
        self.shots = shots

    def same_instance(self, item: dict, scope: str, other_category: bool = True) -> list[dict]:
        """Items of ``scope`` about the item's instance (none without an instance), other than the item, and of
        other categories unless ``other_category`` is False (a same-category item may state the asked fact)."""
        instance = item.get("instance")
        if not instance:
            return []
        return [
            other
            for other in self.items[scope]
            if other.get("instance") == instance
            and other["text"] != item["text"]
            and (not other_category or other.get("category") != item.get("category"))
        ]

    def other_instances(self, item: dict, scope: str) -> list[dict]:
        """Items of ``scope`` and the item's category about other instances (other questions, without instances)."""
        instance = item.get("instance")
        return [
            other
            for other in self.items[scope]
            if other.get("category") == item.get("category")
            and other["text"] != item["text"]
            and (not instance or other.get("instance") != instance)
        ]


def probe_rng(seed: int, family: str, scope: str, index: int) -> random.Random:
    """The family's own stream for one item: adding or changing a family moves no other's draws."""
    return random.Random(f"{seed}/probe/{family}/{scope}/{index}")


def masked(text: str, value: str) -> str | None:
    """``text`` with every occurrence of ``value`` replaced by a blank (None when it does not occur)."""
    if not value or value not in text:
        return None
    return text.replace(value, BLANK)


def answer_sentence(item: dict) -> str:
    """The gold answer as one line, quotable inside a prompt."""
    return " ".join(item["labels"].split())


def named_in_question(item: dict) -> bool:
    instance = item.get("instance")
    return bool(instance) and instance in item["text"]


def pick(rng: random.Random, pool: list[dict], count: int) -> list[dict]:
    return rng.sample(pool, min(count, len(pool)))


@functools.cache
def template_pattern(template: str) -> re.Pattern:
    """A template with ``{field}`` placeholders as a regular expression that captures each field (a field used
    twice must match the same text)."""
    parts, seen = [], set()
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field:
            parts.append(f"(?P={field})" if field in seen else f"(?P<{field}>.+?)")
            seen.add(field)
    return re.compile("".join(parts) + r"\Z")
