"""Unlearning methods: one file each, registered with ``@register`` (see :mod:`knowundo.methods.base`).

Every module of this package is imported on first use of the registry, so a new built-in method is one file;
methods outside the package register the same way from a module named in the ``plugins`` setting.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil

from knowundo.errors import KnowUndoError
from knowundo.layout import RunLabel
from knowundo.methods.base import METHODS, ForgetParams, Method, Side, TwoSidedParams, build_params, register

__all__ = [
    "METHODS",
    "ForgetParams",
    "Method",
    "Side",
    "TwoSidedParams",
    "check_label",
    "defines_region",
    "get_method",
    "method_names",
    "method_params",
    "register",
    "relabels",
    "trained_sides",
]

_INFRASTRUCTURE = {"base", "losses"}
_discovered = False


def _discover() -> None:
    global _discovered
    if not _discovered:
        for module in pkgutil.iter_modules(__path__):
            if module.name not in _INFRASTRUCTURE:
                importlib.import_module(f"{__name__}.{module.name}")
        _discovered = True


def method_names() -> list[str]:
    """Every registered method, built-in ones first (in file order), then plugins."""
    _discover()
    return list(METHODS)


def get_method(name: str) -> Method:
    _discover()
    if name not in METHODS:
        hint = difflib.get_close_matches(name, METHODS, n=1)
        raise KnowUndoError(
            f"unknown method {name!r}"
            + (f"; did you mean '{hint[0]}'?" if hint else "")
            + f"; choose one of {', '.join(METHODS)}"
        )
    return METHODS[name]


def method_params(method_args: dict, method: str, label: str | None = None):
    """The typed parameters of ``method`` from ``unlearn.method_args`` (the method's entry, then the row
    label's, e.g. ``npo@memflex``); unknown methods, keys or types are one-line errors."""
    for key in method_args:
        get_method(RunLabel.parse(key).method)  # an unknown method is an error with a "did you mean"
    values: dict = {}
    for key in dict.fromkeys(k for k in (method, label) if k):
        entry = method_args.get(key, {})
        if not isinstance(entry, dict):
            raise KnowUndoError(f"config key 'unlearn.method_args.{key}' is a section; give it a mapping")
        values.update(entry)
    return build_params(get_method(method), values, f"unlearn.method_args.{method}.")


def _overrides(method: Method, hook: str) -> bool:
    return getattr(type(method), hook) is not getattr(Method, hook)


def defines_region(method: Method) -> bool:
    """Whether the method trains inside a region of its own making (RMU), so no other region applies."""
    return _overrides(method, "own_region")


def trained_sides(method: Method) -> list[str]:
    """The batch sides that get a forward and a backward pass: forget, its alternative answers, retain."""
    return [
        "forget",
        *(["alternative"] if _overrides(method, "alternative_answers") else []),
        *(["retain"] if method.retain else []),
    ]


def relabels(method: Method) -> bool:
    return _overrides(method, "relabel")


def check_label(label: RunLabel) -> Method:
    """The method of a row label, refusing combinations that cannot run (one-line errors)."""
    method = get_method(label.method)
    if label.retain == "general" and not method.retain:
        raise KnowUndoError(
            f"method {label.label!r}: {method.name} uses no retain data, so it has no "
            f"out-of-distribution variant (--general / _ood)"
        )
    if label.region is not None and (method.localized or defines_region(method)):
        raise KnowUndoError(f"method {label.label!r}: {method.name} trains inside its own region; drop @{label.region}")
    return method
