"""Methods and metrics from outside the package: the modules named in the ``plugins`` setting are imported
before any stage runs, and register themselves exactly as built-in ones do (``@register`` /
``register_metric``). A plugin is an importable module name (``my_lab.npo_variant``) or a path to a ``.py``
file."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

from knowundo.errors import KnowUndoError


def load_plugins(names: list[str]) -> None:
    """Import each plugin after the built-in methods and metrics are registered (so a plugin that reuses a
    built-in name is the one named in the error); any error of a plugin is one line."""
    if not names:
        return
    from knowundo.evaluate.metric import metrics
    from knowundo.methods import method_names

    method_names(), metrics()
    for name in names:
        if not isinstance(name, str) or not name:
            raise KnowUndoError(f"plugins: expected module names or .py paths, got {name!r}")
        try:
            if name.endswith(".py"):
                _load_file(Path(name))
            else:
                importlib.import_module(name)
        except KnowUndoError:
            raise
        except ModuleNotFoundError as exc:
            raise KnowUndoError(f"plugins: cannot import {name!r} ({exc})") from None
        except Exception as exc:  # the plugin's own code failed: its error, in one line
            raise KnowUndoError(
                f"plugins: {name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from None


def _load_file(path: Path) -> None:
    if not path.is_file():
        raise KnowUndoError(f"plugins: {path}: file not found")
    module_name = "knowundo_plugin_" + re.sub(r"\W", "_", str(path.resolve().with_suffix("")))
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[module_name]
        raise
