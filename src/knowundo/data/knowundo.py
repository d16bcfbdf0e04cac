"""Loading KnowUnDo from its three sources: the Hugging Face Hub, a local directory in the Hub's layout, and the
bundled offline set. Every source goes through the same validation and returns the same shape:
``{scope: {"train": [...], "val": [...]}}`` for one domain."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from knowundo.artifacts import write_json
from knowundo.config import GENERAL_SETS
from knowundo.data import bundled
from knowundo.data.items import Fields, load_items
from knowundo.data.validate import validate_items, validate_scope
from knowundo.errors import KnowUndoError
from knowundo.layout import DOMAINS, SCOPES, SPLITS, check_domain_name

HUB_REPO = "zjunlp/KnowUnDo"
HOLDOUT = "holdout"  # the part of data.splits that holds the non-members of membership inference
SOURCES = ("bundled", "local", "hub")


@dataclass(frozen=True)
class DataSource:
    """Where the benchmark data comes from. ``path`` is a directory for ``local``, a repo id (or a local mirror
    of one) for ``hub``; ``revision`` pins a Hub commit; ``seed`` drives the bundled generator; ``general`` names the
    general-knowledge set (:func:`load_general`); ``instances`` > 0 keeps that many instances of a domain."""

    kind: str = "bundled"
    path: str | None = None
    revision: str | None = None
    seed: int = 0
    general: str = "real"
    instances: int = 0
    fields: Any = "knowundo"
    splits: dict = field(default_factory=dict, hash=False)

    @classmethod
    def from_config(cls, data_cfg) -> DataSource:
        return cls(
            kind=data_cfg.source,
            path=data_cfg.path,
            revision=data_cfg.revision,
            seed=data_cfg.seed,
            general=data_cfg.general,
            instances=data_cfg.instances,
            fields=data_cfg.fields,
            splits=data_cfg.splits,
        )

    def __post_init__(self):
        if self.kind not in SOURCES:
            raise KnowUndoError(f"unknown data source {self.kind!r}; choose one of {', '.join(SOURCES)}")
        if self.kind == "local" and not self.path:
            raise KnowUndoError("data source 'local' needs a directory (data.path)")
        Fields.of(self.fields)  # an unknown layout or field name is an error now
        if unknown := sorted(set(self.splits) - {*SCOPES, HOLDOUT}):
            raise KnowUndoError(f"data.splits: unknown part {unknown[0]!r}; give {', '.join([*SCOPES, HOLDOUT])}")
        if self.splits and self.kind == "bundled":
            raise KnowUndoError("data.splits is for a local or hub source (data.source); the bundled set has its own")
        for scope, parts in self.splits.items():
            if scope in SCOPES and (not isinstance(parts, dict) or set(parts) != set(SPLITS)):
                raise KnowUndoError(f"data.splits.{scope} needs exactly a train and a val entry")


def check_domain(domain: str, source: DataSource) -> str:
    """A domain the source can hold: the bundled set has the paper's two; a local copy, any lower-case name with
    a directory of that name; the Hub, any config name of the dataset (checked when it loads)."""
    if source.kind == "bundled":
        if domain not in DOMAINS:
            raise KnowUndoError(
                f"unknown domain {domain!r} of the bundled set (it has {', '.join(DOMAINS)}); a "
                f"domain of your own is a local copy: data.source=local, data.path=DIR holding "
                f"DIR/{domain}/unlearn.json and retention.json"
            )
        return domain
    check_domain_name(domain)
    if source.kind == "local" and not (Path(source.path) / domain).is_dir():
        raise KnowUndoError(
            f"{Path(source.path) / domain}: no directory for domain {domain!r} (a local copy holds "
            f"<domain>/unlearn.json and <domain>/retention.json)"
        )
    return domain


@lru_cache(maxsize=4)
def bundled_world(seed: int = 0) -> dict:
    """The generated offline world (benchmark, general-knowledge set, instance-free corpus, holdout) for ``seed``."""
    return bundled.generate(bundled.BundledConfig(seed=seed))


def load_domain(source: DataSource, domain: str) -> dict[str, dict[str, list[dict]]]:
    """Both scopes of one domain, validated."""
    check_domain(domain, source)
    data = {scope: _load_scope(source, domain, scope) for scope in SCOPES}
    return keep_instances(data, source.instances, source.seed) if source.instances else data


def keep_instances(data: dict[str, dict[str, list[dict]]], count: int, seed: int) -> dict[str, dict[str, list[dict]]]:
    """Only the items of ``count`` instances (a seeded choice among those with items in both scopes), every scope
    and split of each; an error when fewer exist or a split would be left empty."""
    names = [{item.get("instance") for split in data[scope].values() for item in split} for scope in SCOPES]
    common = sorted(set.intersection(*names) - {None})
    if count > len(common):
        raise KnowUndoError(
            f"data.instances={count} but the domain has {len(common)} instances with items in both scopes"
        )
    chosen = set(random.Random(f"instances/{seed}").sample(common, count))
    kept = {
        scope: {split: [item for item in items if item.get("instance") in chosen] for split, items in splits.items()}
        for scope, splits in data.items()
    }
    if empty := [f"{scope} {split}" for scope, splits in kept.items() for split, items in splits.items() if not items]:
        raise KnowUndoError(f"data.instances={count} leaves the {', '.join(empty)} split empty; keep more instances")
    return kept


def _load_scope(source: DataSource, domain: str, scope: str) -> dict[str, list[dict]]:
    where = f"{domain}/{scope}.json"
    if source.kind == "bundled":
        return validate_scope(bundled_world(source.seed)["knowundo"][domain][scope], f"bundled {where}")
    if scope in source.splits:
        parts = source.splits[scope]
        return validate_scope({split: _read_part(source, domain, parts[split]) for split in SPLITS}, where)
    if source.kind == "local":
        path = Path(source.path) / domain / f"{scope}.json"
        if not path.is_file():
            raise KnowUndoError(
                f"{path}: file not found (a local copy needs <domain>/<scope>.json, or its files named in data.splits)"
            )
        return validate_scope(_renamed(_read_json(path), source.fields), str(path))
    return validate_scope(
        _renamed(_load_hub_scope(source.path or HUB_REPO, domain, scope, source.revision), source.fields),
        f"{source.path or HUB_REPO}:{where}",
    )


def _renamed(obj, fields):
    """A ``{"train": [...], "val": [...]}`` object with its items' fields renamed by ``data.fields``."""
    mapping = Fields.of(fields)
    if mapping == Fields() or not isinstance(obj, dict):
        return obj
    return {
        key: [mapping.apply(item) if isinstance(item, dict) else item for item in value]
        if isinstance(value, list)
        else value
        for key, value in obj.items()
    }


def _read_part(source: DataSource, domain: str, spec, where: str | None = None) -> list[dict]:
    """The items of one part named in ``data.splits``: a file of a local source, ``config/split`` of a hub one."""
    if not isinstance(spec, str) or not spec:
        raise KnowUndoError(f"data.splits: expected a file or config/split name, got {spec!r}")
    named = spec.replace("{domain}", domain)
    if source.kind == "local":
        return load_items(Path(source.path) / domain / named, source.fields)
    repo = source.path or HUB_REPO
    config, _, split = named.rpartition("/")
    if not split:
        raise KnowUndoError(f"data.splits: {spec!r} is not config/split (or split) of {repo}")
    return load_items(_load_hub_split(repo, config or None, split, source.revision), source.fields, f"{repo}:{named}")


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
    check_domain(domain, source)
    if source.kind == "bundled":
        return validate_items(bundled_world(source.seed)["holdout"][domain], f"bundled {domain}/holdout.json")
    if HOLDOUT in source.splits:
        return _read_part(source, domain, source.splits[HOLDOUT])
    if source.kind == "local":
        path = Path(source.path) / domain / "holdout.json"
        return validate_items(_read_json(path), str(path)) if path.is_file() else None
    return None


def _load_hub_split(repo: str, config: str | None, split: str, revision: str | None):
    """One split of a Hub dataset (or of a local directory in the Hub's layout) as a ``datasets.Dataset``."""
    import datasets

    # a local mirror can change under the same path: never serve it from datasets' cache
    mode = "force_redownload" if Path(repo).is_dir() else None
    try:
        return datasets.load_dataset(repo, name=config, split=split, revision=revision, download_mode=mode)
    except Exception as exc:  # the Hub raises many types (connection, missing config, missing revision)
        raise KnowUndoError(
            f"could not load {repo} (name={config}, split={split}, revision={revision}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None


def _load_hub_scope(repo: str, domain: str, scope: str, revision: str | None) -> dict:
    """One split of KnowUnDo's Hub layout is a single row holding the ``train`` and ``val`` lists."""
    rows = _load_hub_split(repo, domain, scope, revision)
    if len(rows) != 1:
        raise KnowUndoError(f"{repo}:{domain}/{scope}: expected one row holding 'train' and 'val', got {len(rows)}")
    row = rows[0]
    return {
        key: [_drop_nulls(item) for item in value] if isinstance(value, list) else value for key, value in row.items()
    }


def _drop_nulls(item):
    """Arrow gives every item every key seen in the split; keys an item lacked come back as None."""
    return {k: v for k, v in item.items() if v is not None} if isinstance(item, dict) else item


GENERAL_PARTS = ("train", "heldout")
REAL_GENERAL = "general_real.json"  # beside this module: the real-world set, written for knowundo
HELDOUT_SHARE = 0.2


def load_general(source: DataSource) -> dict[str, list[dict]]:
    """The general-knowledge set of a data source (``data.general``): see :func:`general_set`."""
    return general_set(source.general, seed=source.seed)


def general_set(general, fields=None, seed: int = 0) -> dict[str, list[dict]]:
    """The general-knowledge set (out-of-distribution retain data and general capability), ``{"train": [...],
    "heldout": [...]}``: ``real`` (bundled real-world items, for real models), ``fictional`` (the bundled world of
    ``seed``, which the tiny model was pretrained on), a file (JSON list or ``{"train": [...], "heldout": [...]}``;
    JSON lines, CSV or Parquet), or items (:func:`knowundo.data.items.load_items`, renamed by ``fields``). A plain
    list is split 80/20 per category (seeded)."""
    if isinstance(general, str) and general in GENERAL_SETS:  # bundled: knowundo's own fields
        fields = None
    if isinstance(general, dict):
        parts, where = general, "general"
    elif general == "fictional":
        parts, where = bundled_world(seed)["general"], "general"
    elif general == "real":
        parts, where = split_general(_read_json(Path(__file__).with_name(REAL_GENERAL))), "real general"
    elif isinstance(general, (str, Path)):
        path = Path(general)
        if not path.is_file():
            raise KnowUndoError(f"data.general: {str(general)!r} is neither {' nor '.join(GENERAL_SETS)} nor a file")
        where = str(path)
        parts = _read_json(path) if path.suffix.lower() == ".json" else load_items(path, fields)
        if isinstance(parts, list):
            parts = split_general(parts)
    else:
        parts, where = split_general(load_items(general, fields, "general items")), "general"
    if not (isinstance(parts, dict) and set(parts) == set(GENERAL_PARTS)):
        raise KnowUndoError(f'{where}: expected a list of items or {{"train": [...], "heldout": [...]}}')
    return {
        part: load_items(parts[part], fields, f"{where} {part}")
        if fields is not None
        else validate_items(parts[part], f"{where} {part}")
        for part in GENERAL_PARTS
    }


def split_general(items: list, seed: int = 0) -> dict[str, list[dict]]:
    """A held-out share of each category (seeded: the same split on every machine), the rest for training."""
    if not isinstance(items, list):
        raise KnowUndoError(f"a general set must be a list of items, got {type(items).__name__}")
    by_category: dict[str, list] = {}
    for item in items:
        by_category.setdefault(item.get("category", "-") if isinstance(item, dict) else "-", []).append(item)
    split = {part: [] for part in GENERAL_PARTS}
    rng = random.Random(seed)
    for category in sorted(by_category):
        members = list(by_category[category])
        rng.shuffle(members)
        held = round(len(members) * HELDOUT_SHARE)
        split["heldout"] += members[:held]
        split["train"] += members[held:]
    return split


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
