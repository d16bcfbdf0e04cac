"""One unlearning task's data, whatever its source: what every stage of one domain reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from knowundo.data.items import Fields, load_items
from knowundo.data.knowundo import general_set
from knowundo.data.validate import check_no_repeats
from knowundo.layout import check_domain_name


@dataclass
class UnlearningData:
    """Everything the stages of one domain read: both scopes (``{"unlearn" | "retention": {"train" | "val":
    items}}``), the general-knowledge set (``{"train" | "heldout": items}``) and, where there is one, the holdout
    (Unlearn-Scope-like items no model trained on: the non-members of membership inference).

    A stage reads the bundled benchmark, a local copy or the Hub into this shape from ``data.*``;
    :meth:`from_items` builds one from a user's own items."""

    scopes: dict[str, dict[str, list[dict]]]
    general: dict[str, list[dict]]
    holdout: list[dict] | None = None
    domain: str = "custom"

    @classmethod
    def from_items(
        cls,
        forget: Any,
        retain: Any,
        *,
        forget_val: Any = None,
        retain_val: Any = None,
        general: Any = "real",
        holdout: Any = None,
        fields: Fields | dict | str | None = None,
        domain: str = "custom",
    ) -> UnlearningData:
        """Forget items (the Unlearn Scope) and retain items (the Retention Scope), each a ``datasets.Dataset``,
        a list of dicts or a file (:func:`load_items`, renamed by ``fields``). Unlearning trains on ``forget`` /
        ``retain``; evaluation reads ``forget_val`` / ``retain_val`` — without them, the training items themselves
        (TOFU's protocol: the forget set is what is scored). ``general``: ``"real"`` (the bundled real-world set),
        ``"fictional"`` (the tiny model's world), a file, or items (split 80/20, seeded)."""
        check_domain_name(domain)
        scopes = {}
        for scope, train, val in (("unlearn", forget, forget_val), ("retention", retain, retain_val)):
            train_items = load_items(train, fields, f"{scope} train items")
            val_items = load_items(val, fields, f"{scope} val items") if val is not None else train_items
            if val is not None:
                check_no_repeats(train_items, val_items, f"{scope} val")
            scopes[scope] = {"train": train_items, "val": val_items}
        return cls(
            scopes=scopes,
            general=general_set(general, fields),
            domain=domain,
            holdout=load_items(holdout, fields, "holdout items") if holdout is not None else None,
        )
