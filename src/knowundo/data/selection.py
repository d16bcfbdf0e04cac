"""The selection split: items the model knows but no row unlearns on and no table reports, for choosing
hyperparameters and checkpoints without looking at the reported val items.

A seeded share of each instance's train items per scope (whole facts of every person or book, so a choice made on
it generalises over instances as the val split does) and of each category of the general held-out set. The
fine-tune still trains on everything (the model must know the selection items as it knows the rest); unlearning,
localization and the relearning attack read the train split without them, the General column the held-out set
without them."""

from __future__ import annotations

import random

from knowundo.errors import KnowUndoError

SELECTION_SPLITS = ("unlearn", "retention", "general")


def carve(items: list[dict], share: float, seed: int, split: str, group_key: str) -> tuple[list[dict], list[dict]]:
    """(kept, selection), each in the items' order: of every group (items with the same ``group_key`` value) a
    seeded ``round(share * size)`` set aside, at most all but one (every instance keeps a train item)."""
    if share <= 0:
        return list(items), []
    groups: dict = {}
    for position, item in enumerate(items):
        groups.setdefault(str(item.get(group_key)), []).append(position)
    chosen = set()
    for name in sorted(groups):
        members = groups[name]
        count = min(round(share * len(members)), len(members) - 1)
        chosen |= set(random.Random(f"selection/{seed}/{split}/{name}").sample(members, count))
    kept = [item for i, item in enumerate(items) if i not in chosen]
    selection = [item for i, item in enumerate(items) if i in chosen]
    if not selection:
        raise KnowUndoError(
            f"data.selection={share:g} sets no {split} item aside ({len(items)} items in groups of "
            f"{min(len(g) for g in groups.values())} or more); raise it or set it to 0"
        )
    return kept, selection


def requested_instances(items: list[dict], fraction: float, seed: int) -> set[str] | None:
    """The instances a deletion request covers (``data.forget_fraction``): a seeded ``round(fraction * n)`` of the
    Unlearn Scope's ``n`` instances, at least one and, below 1, at most all but one (the rest must stay known);
    None when the request covers all of them."""
    if fraction >= 1:
        return None
    if any(not item.get("instance") for item in items):
        raise KnowUndoError(
            f"data.forget_fraction={fraction:g} needs the instance of every unlearn item (the field 'instance'), "
            "to request whole persons or books; set data.forget_fraction=1"
        )
    names = sorted({item["instance"] for item in items})
    if len(names) < 2:
        raise KnowUndoError(f"data.forget_fraction={fraction:g} needs two or more instances; the data has {len(names)}")
    count = min(max(1, round(fraction * len(names))), len(names) - 1)
    return set(random.Random(f"forget/{seed}").sample(names, count))


def request_groups(items: list[dict], requested: set[str] | None, requests: int, seed: int) -> list[set[str]]:
    """The instances of each of ``run.requests`` deletion requests, in the order they arrive: the requested
    instances (all of the Unlearn Scope's when ``requested`` is None) shuffled with the seed and dealt into
    ``requests`` groups whose sizes differ by at most one."""
    if any(not item.get("instance") for item in items):
        raise KnowUndoError(
            f"run.requests={requests} needs the instance of every unlearn item (the field 'instance'), to request "
            "whole persons or books one request after another; set run.requests=1"
        )
    names = sorted(requested if requested is not None else {item["instance"] for item in items})
    if len(names) < requests:
        raise KnowUndoError(
            f"run.requests={requests} needs at least as many requested instances; the request covers {len(names)}"
        )
    random.Random(f"requests/{seed}").shuffle(names)
    size, extra = divmod(len(names), requests)
    groups, start = [], 0
    for index in range(requests):
        end = start + size + (index < extra)
        groups.append(set(names[start:end]))
        start = end
    return groups
