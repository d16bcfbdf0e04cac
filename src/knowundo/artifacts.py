"""Atomic, pickle-free artefact I/O: a reader sees either the old file or the new one, never a torn one."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from knowundo.layout import CHECKPOINTS_DIR

EVAL_RESULT_KIND = "knowundo-eval"  # marks an evaluation result file, so that reports find exactly those


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def _json_safe(value: Any) -> Any:
    """Non-finite floats become strings so the file stays strict JSON (PPL of a diverged model is inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(target: str | os.PathLike, data: Any) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(_json_safe(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def hash_json(data: Any) -> str:
    """Stable content hash of a JSON-able object (used to key caches and to stamp results)."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def library_versions() -> dict[str, str]:
    """Versions of everything that can change a number, saved beside every result."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in (
        "knowundo",
        "torch",
        "transformers",
        "peft",
        "datasets",
        "accelerate",
        "tokenizers",
        "rouge-score",
        "lm-eval",
        "numpy",
    ):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def file_hash(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the hidden ``.<name>.*.tmp`` files that :func:`atomic_path` leaves when its process is killed
    mid-write (the target itself is always whole); call it before anything writes there again."""
    stale = [p for p in Path(directory).rglob(".*.tmp") if p.is_file()] if Path(directory).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def checkpoint_steps(checkpoints_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Trainer checkpoints ``checkpoint-N`` under a directory as (N, path), oldest first."""
    directory = Path(checkpoints_dir)
    if not directory.is_dir():
        return []
    return sorted(
        (int(p.name.rsplit("-", 1)[1]), p)
        for p in directory.glob("checkpoint-*")
        if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()
    )


class StageOutput:
    """A stage's output directory, keyed by a hash of everything that shapes it.

    Work happens in ``<out>.partial`` (so Trainer checkpoints there survive an interruption and can be resumed);
    a finished stage is one rename away, so ``<out>`` is never half-written. A directory that holds a result of
    other settings is refused, never silently reused.
    """

    def __init__(self, out_dir: str | os.PathLike, key: str, record_name: str):
        self.out_dir, self.key, self.record_name = Path(out_dir), key, record_name
        self.partial = self.out_dir.with_name(self.out_dir.name + ".partial")

    def finished(self) -> dict | None:
        """The saved record if this exact stage is done; raise if the directory holds something else."""
        from knowundo.errors import KnowUndoError

        record_path = self.out_dir / self.record_name
        if record_path.is_file():
            record = read_json(record_path)
            if record.get("key") != self.key:
                raise KnowUndoError(
                    f"{self.out_dir} holds results of other settings (key {record.get('key')}, "
                    f"now {self.key}); choose another output directory or remove it"
                )
            return record
        if self.out_dir.exists() and any(self.out_dir.iterdir()):
            raise KnowUndoError(
                f"{self.out_dir} exists and is not a finished {self.record_name[:-5]} stage; "
                f"choose another output directory or remove it"
            )
        return None

    def begin(self) -> Path:
        """The working directory: kept if it belongs to this key (resume), wiped if it belongs to another.
        With several processes the main one prepares it and the others wait."""
        import shutil

        from knowundo.distributed import barrier, is_main

        key_file = self.partial / "key"
        if is_main():
            if self.partial.exists() and (not key_file.is_file() or key_file.read_text() != self.key):
                shutil.rmtree(self.partial)
            remove_stale_temporaries(self.partial)
            self.partial.mkdir(parents=True, exist_ok=True)
            key_file.write_text(self.key)
        barrier()
        return self.partial

    def last_checkpoint(self) -> str | None:
        """The newest *complete* Trainer checkpoint. Trainer writes
        ``trainer_state.json`` last and in place, so a process killed while saving leaves a checkpoint without a
        readable one: it is skipped (and removed by the main process), never resumed."""
        import shutil

        from knowundo.distributed import is_main

        for _, path in reversed(checkpoint_steps(self.partial / CHECKPOINTS_DIR)):
            try:
                read_json(path / "trainer_state.json")
                return str(path)
            except (OSError, ValueError):
                if is_main():
                    shutil.rmtree(path)
        return None

    def commit(self, record: dict) -> dict:
        """Publish the stage (main process); every process returns the record once it is published."""
        from knowundo.distributed import barrier, is_main

        if is_main():
            write_json(self.partial / self.record_name, record)
            (self.partial / "key").unlink()
            if self.out_dir.exists():
                self.out_dir.rmdir()  # empty: finished() refused anything else
            os.replace(self.partial, self.out_dir)
        barrier()
        return record


def code_revision() -> str | None:
    """The git commit of the source checkout knowundo runs from (``-dirty`` with uncommitted changes under src/), or
    None for an installed package (its version is in :func:`library_versions`)."""
    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / ".git").exists():
        return None

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return None
    # dirty: the package's own code changed (results pages written into docs/ by the run itself do not count)
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no", "--", "src") else "")


def relative_path(path: str | os.PathLike, record_dir: str | os.PathLike) -> str:
    """``path`` as a record in ``record_dir`` stores it: relative to that directory, so that a run directory moved
    or copied elsewhere keeps every link inside it (an absolute path outside it stays relative too)."""
    return os.path.relpath(Path(path).resolve(), Path(record_dir).resolve())


def stored_path(stored: str, record_dir: str | os.PathLike) -> Path:
    """A path read from a record in ``record_dir``, relative to it (absolute paths of older records as they are)."""
    return Path(os.path.normpath(Path(record_dir) / stored))
