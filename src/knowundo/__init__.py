"""KnowUnDo: knowledge unlearning for LLMs that forgets the Unlearn Scope and keeps the Retention Scope.

The public API is ``__all__``; names are imported on first use, so ``import knowundo`` stays cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "load_config": "knowundo.config",
    "Config": "knowundo.config",
    "UnlearningData": "knowundo.data.task",
    "Fields": "knowundo.data.items",
    "load_items": "knowundo.data.items",
    "Region": "knowundo.region",
    "UnlearnResult": "knowundo.api",
    "FinetuneResult": "knowundo.api",
    "finetune_model": "knowundo.api",
    "localize_model": "knowundo.api",
    "unlearn_model": "knowundo.api",
    "evaluate_model": "knowundo.api",
    "with_trainable_adapter": "knowundo.api",
    "load_model": "knowundo.api",
    "load_benchmark": "knowundo.api",
    "UnlearnTrainer": "knowundo.unlearn",
    "Method": "knowundo.methods",
    "ForgetParams": "knowundo.methods",
    "TwoSidedParams": "knowundo.methods",
    "Side": "knowundo.methods",
    "register": "knowundo.methods",
    "method_names": "knowundo.methods",
    "KnowUndoError": "knowundo.errors",
}
__all__ = ["__version__", *_PUBLIC]  # noqa: PLE0604 (the names are _PUBLIC's keys)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'knowundo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
