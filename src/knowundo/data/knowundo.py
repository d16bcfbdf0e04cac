"""Loading KnowUnDo from its three sources: the Hugging Face Hub, a local directory in the Hub's layout, and the
bundled offline set. Every source goes through the same validation and returns the same shape:
``{scope: {"train": [...], "val": [...]}}`` for one domain."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from knowundo.artifacts import write_json
from knowundo.data import bundled
from knowundo.data.validate import validate_items, validate_scope
from knowundo.errors import KnowUndoError
from knowundo.layout import DOMAINS, SCOPES

HUB_REPO = "zjunlp/KnowUnDo"
SOURCES = ("bundled", "local", "hub")


@dataclass(frozen=True)
class DataSource:
    """Where the benchmark data comes from. ``path`` is a directory for ``local``, a repo id (or a local mirror
    of one) for ``hub``; ``revision`` pins a Hub commit; ``seed`` drives the bundled generator."""

    kind: str = "bundled"
    path: str | None = None
    revision: str | None = None
    seed: int = 0

    @classmethod
    def from_config(cls, data_cfg) -> "DataSource":
        return cls(kind=data_cfg.source, path=data_cfg.path, revision=data_cfg.revision, seed=data_cfg.seed)

    def __post_init__(self):
        if self.kind not in SOURCES:
            raise KnowUndoError(f"unknown data source {self.kind!r}; choose one of {', '.join(SOURCES)}")
        if self.kind == "local" and not self.path:
            raise KnowUndoError("data source 'local' needs a directory (data.path)")


def check_domain(domain: str) -> str:
    if domain not in DOMAINS:
        raise KnowUndoError(f"unknown domain {domain!r}; choose one of {', '.join(DOMAINS)}")
    return domain


@lru_cache(maxsize=4)
def bundled_world(seed: int = 0) -> dict:
    """The generated offline world (benchmark, general-knowledge set, instance-free corpus, holdout) for ``seed``."""
    return bundled.generate(bundled.BundledConfig(seed=seed))


def load_domain(source: DataSource, domain: str) -> dict[str, dict[str, list[dict]]]:
    """Both scopes of one domain, validated."""
    check_domain(domain)
    return {scope: _load_scope(source, domain, scope) for scope in SCOPES}


def _load_scope(source: DataSource, domain: str, scope: str) -> dict[str, list[dict]]:
    where = f"{domain}/{scope}.json"
    if source.kind == "bundled":
        return validate_scope(bundled_world(source.seed)["knowundo"][domain][scope], f"bundled {where}")
    if source.kind == "local":
        path = Path(source.path) / domain / f"{scope}.json"
        if not path.is_file():
            raise KnowUndoError(f"{path}: file not found (a local copy needs <domain>/<scope>.json)")
        return validate_scope(_read_json(path), str(path))
    return validate_scope(_load_hub_scope(source.path or HUB_REPO, domain, scope, source.revision),
                          f"{source.path or HUB_REPO}:{where}")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KnowUndoError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise KnowUndoError(f"{path}: JSON nested too deeply to be a KnowUnDo data file") from None


def load_holdout(source: DataSource, domain: str) -> list[dict] | None:
    """Unlearn-scope items of instances that no split contains (the non-members of membership inference), or
    None where the source has none: the Hub set has no holdout, a local copy only as ``<domain>/holdout.json``."""
    check_domain(domain)
    if source.kind == "bundled":
        return validate_items(bundled_world(source.seed)["holdout"][domain], f"bundled {domain}/holdout.json")
    if source.kind == "local":
        path = Path(source.path) / domain / "holdout.json"
        return validate_items(_read_json(path), str(path)) if path.is_file() else None
    return None


def _load_hub_scope(repo: str, domain: str, scope: str, revision: str | None) -> dict:
    """One Hub split is a single row holding the ``train`` and ``val`` lists."""
    import datasets

    # a local mirror can change under the same path: never serve it from datasets' cache
    mode = "force_redownload" if Path(repo).is_dir() else None
    try:
        rows = datasets.load_dataset(repo, name=domain, split=scope, revision=revision, download_mode=mode)
    except Exception as exc:  # the Hub raises many types (connection, missing config, missing revision)
        raise KnowUndoError(f"could not load {repo} (name={domain}, split={scope}, revision={revision}): "
                            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if len(rows) != 1:
        raise KnowUndoError(f"{repo}:{domain}/{scope}: expected one row holding 'train' and 'val', got {len(rows)}")
    row = rows[0]
    return {key: [_drop_nulls(item) for item in value] if isinstance(value, list) else value
            for key, value in row.items()}


def _drop_nulls(item):
    """Arrow gives every item every key seen in the split; keys an item lacked come back as None."""
    return {k: v for k, v in item.items() if v is not None} if isinstance(item, dict) else item


def load_general(source: DataSource) -> dict[str, list[dict]]:
    """The general-knowledge set (out-of-distribution retain data and general capability): train + heldout."""
    general = bundled_world(source.seed)["general"]
    return {part: validate_items(items, f"general {part}") for part, items in general.items()}


def export_hub_layout(seed: int, out_dir: str | Path) -> Path:
    """Write the bundled set as a directory in the Hub's layout, with the dataset card that lets
    ``datasets.load_dataset(dir, name=domain, split=scope)`` read it exactly like the Hub repo, plus each
    domain's ``holdout.json`` (the layout of a local copy with a holdout)."""
    out_dir = Path(out_dir)
    world = bundled_world(seed)
    card = ["---", "configs:"]
    for domain in DOMAINS:
        write_json(out_dir / domain / "holdout.json", world["holdout"][domain])  # for load_holdout, not the card
        card += [f"- config_name: {domain}", "  data_files:"]
        for scope in SCOPES:
            write_json(out_dir / domain / f"{scope}.json", world["knowundo"][domain][scope])
            card += [f"  - split: {scope}", f"    path: {domain}/{scope}.json"]
    card += ["---", "", f"KnowUnDo-format data generated by knowundo (bundled set, seed {seed}).", ""]
    (out_dir / "README.md").write_text("\n".join(card))
    return out_dir
