"""Where models built or converted here are cached (``KNOWUNDO_CACHE``, default ``~/.cache/knowundo``)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("KNOWUNDO_CACHE", Path.home() / ".cache" / "knowundo"))
