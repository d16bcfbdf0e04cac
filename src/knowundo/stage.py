"""What every stage (finetune, localize, unlearn, eval) shares: the data it reads, how items become tokens, the
key of its output and the common fields of its record.

A key hashes everything that shapes a stage's output: the seed, the model (with the tiny model's own settings
when it is built here), the data settings and the data itself, the stage's own config section and the stage's
further inputs (the upstream adapter's weights, a region file, a method label). A directory holds the result of
exactly one key, so changing any of these redoes the stage instead of reusing a stale result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from knowundo.artifacts import StageOutput, file_hash, hash_json, library_versions
from knowundo.config import Config, TrainConfig, keyed
from knowundo.data.format import Formatter
from knowundo.data.knowundo import DataSource, check_domain, load_domain, load_general, load_holdout
from knowundo.data.selection import carve, request_groups, requested_instances
from knowundo.data.task import UnlearningData
from knowundo.errors import KnowUndoError
from knowundo.layout import CHECKPOINTS_DIR, SCOPES
from knowundo.models.load import built_in_key, checkpoint_weights, resolved_dtype, trains_in_bf16
from knowundo.models.training import training_arguments
from knowundo.placement import describe


def model_settings(cfg: Config) -> dict:
    """What identifies the model: its section with ``dtype`` as resolved on this machine (``auto`` trains and
    evaluates in another dtype on another device), plus what identifies a built-in model (the tiny model's recipe,
    the smollm2 weights' hash)."""
    model = cfg.to_dict()["model"]
    return {"model": {**model, "dtype": resolved_dtype(model["dtype"])}, **built_in_key(cfg)}


def adapter_hash(adapter: str | Path | None) -> str | None:
    """The hash of a saved adapter's (or full checkpoint's) weights; None for none."""
    if adapter is None:
        return None
    files = checkpoint_weights(adapter)
    return file_hash(files[0]) if len(files) == 1 else hash_json([file_hash(f) for f in files])


@dataclass
class Stage:
    """One stage of one domain: ``Stage("unlearn", cfg, "privacy")`` reads the domain from ``cfg.data``;
    ``Stage.of("unlearn", cfg, data)`` reads the given :class:`UnlearningData` instead."""

    name: str
    cfg: Config
    domain: str
    given: UnlearningData | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.given is None:
            check_domain(self.domain, self.source)

    @classmethod
    def of(cls, name: str, cfg: Config, data: UnlearningData) -> Stage:
        return cls(name, cfg, data.domain, data)

    @cached_property
    def source(self) -> DataSource:
        return DataSource.from_config(self.cfg.data)

    @cached_property
    def data(self) -> dict[str, dict[str, list[dict]]]:
        """Both scopes of the domain, validated: ``{scope: {"train": [...], "val": [...]}}``."""
        return self.given.scopes if self.given is not None else load_domain(self.source, self.domain)

    @cached_property
    def holdout(self) -> list[dict] | None:
        """Unlearn-scope items of instances no model trains on (membership non-members), if the data has them."""
        return self.given.holdout if self.given is not None else load_holdout(self.source, self.domain)

    @cached_property
    def general(self) -> dict[str, list[dict]]:
        """The general-knowledge set: ``{"train": [...], "heldout": [...]}``."""
        return self.given.general if self.given is not None else load_general(self.source)

    @cached_property
    def _requests(self) -> tuple[set[str] | None, set[str] | None]:
        """(instances requested so far, instances this stage unlearns); None: all of the Unlearn Scope's. Without
        ``data.request`` both are the request of ``data.forget_fraction``; at request r of ``run.requests``, the
        first r groups and the r-th (:func:`request_groups`)."""
        unlearn = self.data["unlearn"]
        items = unlearn["train"] + unlearn["val"]
        whole = requested_instances(items, self.cfg.data.forget_fraction, self.cfg.data.seed)
        request = self.cfg.data.request
        if not request:
            return whole, whole
        groups = request_groups(items, whole, self.cfg.run.requests, self.cfg.data.seed)
        so_far = whole if request == len(groups) else set().union(*groups[:request])
        return so_far, groups[request - 1]

    @property
    def requested(self) -> set[str] | None:
        """The Unlearn Scope's instances requested so far (``data.forget_fraction``, ``data.request``; None: all)."""
        return self._requests[0]

    def _split(self, scope: str, split: str, requested: bool = True, instances: set[str] | None = None) -> list[dict]:
        """A split as the request sees it: of the Unlearn Scope, the items of the requested instances
        (``requested``; or of ``instances``) or of the others (the rest, which must stay known); of the Retention
        Scope, all."""
        items = self.data[scope][split]
        chosen = instances if instances is not None else self.requested
        if scope != "unlearn" or chosen is None:
            return items if requested else []
        return [item for item in items if (item["instance"] in chosen) == requested]

    def val(self, split: str) -> list[dict]:
        """The val items a table reports: ``unlearn`` (the instances requested so far), ``retention``, or
        ``unrequested`` (the Unlearn Scope's other instances', empty when every instance is requested)."""
        return self._split("unlearn", "val", requested=False) if split == "unrequested" else self._split(split, "val")

    def unrequested(self) -> list[dict]:
        """Train and val items of the Unlearn Scope's instances no request covers (the oracle learns them)."""
        return [item for split in ("train", "val") for item in self._split("unlearn", split, requested=False)]

    @cached_property
    def _carved(self) -> dict[str, tuple[list[dict], list[dict]]]:
        """Split -> (kept, selection) under ``data.selection`` (:mod:`knowundo.data.selection`), of the Unlearn
        Scope's items the stage unlearns (the request's, or the current one of ``run.requests``)."""
        share, seed = self.cfg.data.selection, self.cfg.data.seed
        unlearning = self._requests[1]
        carved = {
            scope: carve(self._split(scope, "train", instances=unlearning), share, seed, scope, "instance")
            for scope in SCOPES
        }
        carved["general"] = carve(self.general["heldout"], share, seed, "general", "category")
        for scope in SCOPES:
            reported = {item["text"] for item in self.data[scope]["val"]}
            if any(item["text"] in reported for item in carved[scope][1]):
                raise KnowUndoError(
                    f"data.selection: the {scope} val split repeats train items (data without val items is scored "
                    f"on its train items), so a selection split would be reported; set data.selection=0"
                )
        return carved

    def train(self, scope: str) -> list[dict]:
        """The train split of a scope as unlearning, localization and the relearning attack read it: without the
        selection split, and of the Unlearn Scope only the instances this request covers."""
        return self._carved[scope][0]

    @property
    def general_heldout(self) -> list[dict]:
        """The held-out general set the General columns report: without the selection split."""
        return self._carved["general"][0]

    def selection(self, split: str) -> list[dict]:
        """The selection split of ``unlearn``, ``retention`` or ``general`` (empty when ``data.selection`` is 0)."""
        return self._carved[split][1]

    def formatter(self, tokenizer, system_prompt: str | None = None) -> Formatter:
        return Formatter(tokenizer, self.cfg.model.template, self.cfg.model.max_length, system_prompt=system_prompt)

    def training_arguments(self, recipe: TrainConfig, work: Path, run: str, progress: bool, **extra):
        """The stage's TrainingArguments: checkpoints under ``work``, the run's seed, bfloat16 where the model trains
        in it, the configured tracking integrations with the run named ``<domain>/<run>``."""
        return training_arguments(
            work / CHECKPOINTS_DIR,
            recipe,
            seed=self.cfg.seed,
            progress=progress,
            bf16=trains_in_bf16(self.cfg),
            report_to=self.cfg.report_to,
            run_name=f"{self.domain}/{run}",
            **extra,
        )

    def key(self, data: Any, sections: tuple[str, ...] = (), **inputs) -> str:
        """Hash of everything that shapes the output (see the module docstring); ``data``: the items it reads;
        ``sections``: the config sections of this stage."""
        cfg = keyed(self.cfg.to_dict())
        if self.cfg.data.request:  # the groups of a request depend on how many there are
            inputs["requests"] = self.cfg.run.requests
        settings = {
            "seed": cfg["seed"],
            "data": cfg["data"],
            **model_settings(self.cfg),
            **{section: cfg[section] for section in sections},
        }
        return hash_json(
            {"stage": self.name, "domain": self.domain, "settings": settings, "data": hash_json(data), **inputs}
        )

    def output(
        self, out_dir: str | Path, record_name: str, data: Any, sections: tuple[str, ...] = (), **inputs
    ) -> StageOutput:
        return StageOutput(out_dir, self.key(data, sections, **inputs), record_name)

    def record(self, key: str, data: Any, **fields) -> dict:
        """The fields every stage record carries (provenance: where it ran among them), then the stage's own."""
        return {
            "stage": self.name,
            "domain": self.domain,
            "key": key,
            "seed": self.cfg.seed,
            "device": describe(),
            "data_hash": hash_json(data),
            **fields,
            "config": self.cfg.to_dict(),
            "versions": library_versions(),
        }
