"""The on-disk layout and the names every stage agrees on: domains, scopes, record and directory names, and the
grammar of a row label (``ga_gd_ood``, ``npo@memflex``, ``ga@20``). Defined once here; stages, evaluation, the
pipeline and the report import them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from knowundo.errors import KnowUndoError

DOMAINS = ("copyright", "privacy")  # the paper's domains, the bundled data's
DOMAIN_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # a domain names a directory of a run


def check_domain_name(name: str) -> str:
    """A domain name usable as a directory name on every system; a one-line error otherwise."""
    if not isinstance(name, str) or not DOMAIN_NAME.fullmatch(name):
        raise KnowUndoError(f"domain name {name!r}: use lower-case letters, digits, '_' and '-' (at most 64)")
    return name


SCOPES = ("unlearn", "retention")
SPLITS = ("train", "val")

# stage records: a directory holding one of these is a finished stage
FINETUNE_RECORD = "finetune.json"
GRADIENTS_RECORD = "gradients.json"
UNLEARN_RECORD = "unlearn.json"
RUN_RECORD = "run.json"
STAGES_LOG = "stages.log"  # the stage lines of every invocation of a run, appended
# files beside the records
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # peft's name; the only adapter file ever loaded
CHECKPOINTS_DIR = "checkpoints"
GRADIENT_STATS = "gradients.safetensors"
REGION_FILE = "region.json"
ROW_MASKS = "region_rows.safetensors"
HEATMAP = "heatmap.png"
METHOD_TENSORS = "method_tensors.safetensors"  # tensors a method records (RMU's steering vector)
RELEARN_DIR = "relearn"  # beside an unlearned adapter: the adapter after the relearning attack
RELEARN_RECORD = "relearn.json"
SEEDS_DIR = "seeds"  # OUT/<domain>/seeds/<seed>/: a row's other training seeds
SWEEP_DIR = "sweep"  # OUT/<domain>/sweep/<label>/<point>/: the trainings of `knowundo sweep`
REQUESTS_DIR = "requests"  # OUT/<domain>/requests/<r>/: the stages of request r of run.requests
SELECTION_SCORES = "selection.json"  # a model's scores on the selection split
SELECTION_DIR = "selection"  # OUT/<domain>/selection/: the reference models' selection scores
SELECTED_RECORD = "selected.json"  # beside an unlearning run: the checkpoint it reports (unlearn.select) and why
SWEEP_RESULTS = "sweep.json"  # OUT/report/: every point of a sweep, its references and the choices

# row labels
BASE_LABEL = "base"
VANILLA_LABEL = "vanilla"
ORACLE_LABEL = "oracle"  # fine-tuned on the Retention Scope only: never saw the Unlearn Scope
OOD_SUFFIX = "_ood"  # retain on the general-knowledge set instead of the retention scope
REGION_SEPARATOR = "@"
REGIONS = ("memflex",)  # where a region comes from: MemFlex localization of the same domain
RETAIN_SOURCES = ("retention", "general")
REUSED_SUFFIX = "+reused"  # a row of run.requests that keeps the first request's region


@dataclass(frozen=True)
class RunLabel:
    """One row of a comparison: a method, the retain data it uses and the region it trains in.

    Grammar: ``<method>[_ood][@<region>]``; an unlearning checkpoint adds ``@<step>`` (``npo@memflex@20``)."""

    method: str
    retain: str = "retention"
    region: str | None = None

    @property
    def label(self) -> str:
        suffix = OOD_SUFFIX if self.retain == "general" else ""
        return self.method + suffix + (f"{REGION_SEPARATOR}{self.region}" if self.region else "")

    @property
    def name(self) -> str:
        """What its directories and results are called (the label, unless a variant says more)."""
        return self.label

    @classmethod
    def parse(cls, label: str) -> RunLabel:
        name, *regions = label.split(REGION_SEPARATOR)
        if len(regions) > 1 or not name:
            raise KnowUndoError(f"method label {label!r}: expected <method>[{OOD_SUFFIX}][@<region>]")
        region = regions[0] if regions else None
        if region is not None and region not in REGIONS:
            raise KnowUndoError(
                f"method label {label!r}: unknown region {region!r}; choose one of {', '.join(REGIONS)}"
            )
        if name.endswith(OOD_SUFFIX):
            return cls(name[: -len(OOD_SUFFIX)], "general", region)
        return cls(name, "retention", region)


@dataclass(frozen=True)
class RequestRow(RunLabel):
    """A row of ``run.requests``: its settings are the row's (``label``); one trained in a region either localizes
    again at every request or keeps the first request's region (``reused``, named ``<label>+reused``)."""

    reused: bool = False

    @property
    def name(self) -> str:
        return self.label + (REUSED_SUFFIX if self.reused else "")


def checkpoint_label(label: str, step: int) -> str:
    return f"{label}{REGION_SEPARATOR}{step}"


def split_checkpoint_label(label: str) -> tuple[str, int | None]:
    """(row label, checkpoint step or None): ``ga@20`` -> (ga, 20); ``npo@memflex`` -> (npo@memflex, None)."""
    match = re.fullmatch(rf"(.+){REGION_SEPARATOR}(\d+)", label)
    return (match[1], int(match[2])) if match else (label, None)


@dataclass(frozen=True)
class RunLayout:
    """Where `knowundo run` puts each stage of one domain under ``OUT/<domain>``."""

    root: Path

    @property
    def finetune(self) -> Path:
        return self.root / "finetune"

    @property
    def adapter(self) -> Path:
        return self.finetune / ADAPTER_DIR

    @property
    def oracle(self) -> Path:
        return self.root / "oracle"

    @property
    def oracle_adapter(self) -> Path:
        return self.oracle / ADAPTER_DIR

    @property
    def localize(self) -> Path:
        return self.root / "localize"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def unlearn(self, label: str) -> Path:
        return self.root / "unlearn" / label

    def unlearned_adapter(self, label: str) -> Path:
        return self.unlearn(label) / ADAPTER_DIR

    def eval(self, label: str) -> Path:
        return self.eval_dir / f"{label}.json"

    def sweep_point(self, label: str, point: str) -> Path:
        """One training of `knowundo sweep`: an unlearning run directory, with its selection scores."""
        return self.root / SWEEP_DIR / label / point

    def selection_scores(self, label: str) -> Path:
        """The selection-split scores of a reference model (vanilla, oracle) that choices compare with."""
        return self.root / SELECTION_DIR / f"{label}.json"

    def request(self, index: int) -> RunLayout:
        """Where request ``index`` of ``run.requests`` puts its stages: the same layout again, with one
        localization per model it localized on (:meth:`localized`)."""
        return RunLayout(self.root / REQUESTS_DIR / str(index))

    def localized(self, model: str) -> Path:
        """A request's localization on ``model`` (the fine-tuned model at the first request, a row's own later)."""
        return self.localize / model

    def seed(self, seed: int) -> RunLayout:
        """Where the rows trained with another seed than the run's go (``run.seeds``): the same layout again."""
        return RunLayout(self.root / SEEDS_DIR / str(seed))


def relearned_adapter(adapter: str | Path) -> Path:
    """Where the relearning attack on an unlearned adapter puts its adapter: beside the attacked one, or inside
    it for a checkpoint (each checkpoint a row may report, ``unlearn.select``, has its own)."""
    adapter = Path(adapter)
    if adapter.parent.name == CHECKPOINTS_DIR:
        return adapter / RELEARN_DIR / ADAPTER_DIR
    return adapter.parent / RELEARN_DIR / ADAPTER_DIR


def report_dir(out: str | Path) -> Path:
    return Path(out) / "report"
