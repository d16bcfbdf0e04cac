"""The Python API: models, tokenizers and data in, models, regions and metrics out.

Every function here runs the same code as the stage of the same name in ``knowundo run`` (which adds loading from
and saving to a run directory around it)::

    import knowundo

    cfg = knowundo.load_config("tiny")
    data = knowundo.UnlearningData.from_items(forget=forget_ds, retain=retain_ds, general="fictional")
    model = knowundo.with_trainable_adapter(model, cfg)  # a peft model keeps its adapter; a plain one gets LoRA
    region = knowundo.localize_model(model, tokenizer, data, cfg)
    result = knowundo.unlearn_model(model, tokenizer, data, "npo", config=cfg, region=region)
    metrics = knowundo.evaluate_model(result.model, tokenizer, data, cfg, label="npo@memflex")
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from knowundo.config import NEUTRAL_PRESET, Config, load_config
from knowundo.data.task import UnlearningData
from knowundo.errors import KnowUndoError
from knowundo.finetune import train_finetune
from knowundo.layout import SCOPES
from knowundo.localize import choose_region, gradient_statistics, selection_for
from knowundo.methods import Method
from knowundo.models.load import attach_lora, load_base, prepare_base, with_pad_token
from knowundo.placement import place
from knowundo.region import Region, load_region
from knowundo.stage import Stage
from knowundo.unlearn import REFERENCE, add_reference, plan_run, train_unlearning, trainable_whole


@dataclass
class UnlearnResult:
    """An unlearning run's model (a peft model whose ``default`` adapter was trained, or the plain model trained
    whole; ``model.save_pretrained`` writes it) and its record (the fields ``unlearn.json`` holds: method,
    parameters, steps, losses, memory)."""

    model: object
    record: dict


def _config(config: Config | None) -> Config:
    """The settings given, else the neutral preset for real chat models."""
    return config if config is not None else load_config(NEUTRAL_PRESET)


def _stage(name: str, config: Config | None, data: UnlearningData) -> Stage:
    if not isinstance(data, UnlearningData):
        raise KnowUndoError(
            f"data: expected an UnlearningData (UnlearningData.from_items(...)), got {type(data).__name__}"
        )
    return Stage.of(name, _config(config), data)


def load_model(config: Config | None = None):
    """(model, tokenizer) of ``model.name``: a Hugging Face id or directory, or a built-in (``tiny``, built here on
    first use; ``smollm2``, converted on first use) — in ``model.dtype``, on the device the placement seam chose."""
    cfg = _config(config)
    prepare_base(cfg, progress=False)
    return load_base(cfg)


def load_benchmark(domain: str, config: Config | None = None) -> UnlearningData:
    """One domain of the benchmark that ``data.*`` names (the bundled set, a local copy or the Hub), with the
    general set ``data.general`` and the domain's holdout where it has one."""
    stage = Stage("eval", _config(config), domain)
    return UnlearningData(scopes=stage.data, general=stage.general, holdout=stage.holdout, domain=domain)


def with_trainable_adapter(model, config: Config | None = None):
    """``model`` placed by the placement seam, with a trainable LoRA adapter named ``default``: a peft model's own
    (say, the fine-tune that taught it the data), or a fresh one on ``lora.*`` for a plain model (which then starts
    exactly as it is: LoRA's B matrices are zero)."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        if "default" not in model.peft_config:
            raise KnowUndoError(
                f"the peft model has no adapter named 'default' (it has "
                f"{', '.join(model.peft_config)}); name the adapter to unlearn 'default'"
            )
        model.peft_config["default"].inference_mode = False
        model.set_adapter("default")  # trainable; any other adapter frozen
        return place(model)
    return attach_lora(place(model), _config(config))


@dataclass
class FinetuneResult:
    """A fine-tune's model (a peft model whose fresh ``default`` adapter learned the data) and its record (the
    fields ``finetune.json`` holds: items, epochs, train accuracy per epoch, losses)."""

    model: object
    record: dict


def finetune_model(
    model,
    tokenizer,
    data: UnlearningData,
    config: Config | None = None,
    *,
    oracle: bool = False,
    output_dir: str | Path | None = None,
    progress: bool = False,
) -> FinetuneResult:
    """The fine-tune (``knowundo finetune``) of a plain model on both scopes of ``data``, train and val, plus the
    replayed share of its general set, until ``finetune.target_accuracy``: a fresh LoRA (``lora.*``) that *knows*
    the data — the vanilla model. ``oracle``: the Retention Scope only (the model that never saw the Unlearn
    Scope). ``output_dir``: where the Trainer's checkpoints go (default: a temporary directory, removed)."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        raise KnowUndoError(
            "finetune_model trains a fresh adapter on a plain model; give it the base model "
            "(model.get_base_model(), or unload() a peft model)"
        )
    stage = _stage("finetune", config, data)
    with tempfile.TemporaryDirectory(prefix="knowundo-finetune-") as scratch:
        work = Path(output_dir) if output_dir is not None else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        model, _, fields = train_finetune(stage, place(model), with_pad_token(tokenizer), work, oracle, progress)
    model.eval()
    return FinetuneResult(model, stage.record(None, stage.data, oracle=oracle, **fields))


def localize_model(
    model, tokenizer, data: UnlearningData, config: Config | None = None, progress: bool = False
) -> Region:
    """MemFlex localization (``knowundo localize``) on a peft model in memory: the gradient statistics of random
    relabellings of both scopes' train items over its ``default`` LoRA matrices, and the region ``localize.*``
    selects from them. A plain model has no LoRA matrices to localize in: give it an adapter first
    (:func:`with_trainable_adapter`) and pass that model on to :func:`unlearn_model` with the region."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise KnowUndoError(
            "localize_model needs a peft model (the LoRA matrices to choose among): "
            "model = knowundo.with_trainable_adapter(model, config) first"
        )
    stage = _stage("localize", config, data)
    cfg = stage.cfg
    selection = selection_for(cfg, stage.domain)
    model = with_trainable_adapter(model, cfg)
    loc = cfg.localize
    stats = gradient_statistics(
        model,
        stage.formatter(with_pad_token(tokenizer)),
        {scope: stage.train(scope) for scope in SCOPES},
        loc.copies,
        cfg.seed,
        loc.batch_size,
        loc.granularity,
        progress,
        f"localize {stage.domain}",
    )
    return choose_region(stats, selection, loc.granularity)


def unlearn_model(
    model,
    tokenizer,
    data: UnlearningData,
    method: str | Method,
    *,
    config: Config | None = None,
    region: Region | str | Path | None = None,
    retain: str = "retention",
    output_dir: str | Path | None = None,
    progress: bool = False,
    callbacks: list | None = None,
) -> UnlearnResult:
    """Unlearn ``data``'s Unlearn Scope (its train items) with ``method`` (a registered name, or a
    :class:`~knowundo.methods.Method` instance, e.g. your own) inside ``region`` (a :class:`Region` or a
    ``region.json``; MemFlex needs one, any other method then trains only there), keeping the Retention Scope
    (``retain="general"``: the general set instead). Settings: ``config.unlearn`` with its per-method entries.
    The model is trained in place (its ``default`` LoRA adapter; a plain model gets a fresh one) and returned
    with the record; with ``unlearn.full_parameters`` every weight trains instead, in float32 (a peft model's
    adapter merged into it first), and the model returned is the plain model. ``output_dir``: where the Trainer's
    checkpoints go (default: a temporary directory, removed).
    """
    from peft import PeftModel

    stage = _stage("unlearn", config, data)
    plan = plan_run(stage, method, retain, region is not None)
    tokenizer = with_pad_token(tokenizer)
    referenced = bool(plan.method.reference_sides(plan.params))
    reference = None
    if plan.settings.full_parameters:
        model = place(model.merge_and_unload() if isinstance(model, PeftModel) else model)
        model, reference = trainable_whole(model, referenced)
    else:
        model = with_trainable_adapter(model, stage.cfg)
        if referenced:
            add_reference(model)
    masks = load_region(region, model) if region is not None else None
    with tempfile.TemporaryDirectory(prefix="knowundo-unlearn-") as scratch:
        work = Path(output_dir) if output_dir is not None else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        _, fields = train_unlearning(
            plan, model, tokenizer, masks, work, progress, callbacks or [], reference_model=reference
        )
    if REFERENCE in getattr(model, "peft_config", {}):
        model.delete_adapter(REFERENCE)
    model.eval()
    given = (region.to_json() if isinstance(region, Region) else {"file": str(region)}) if region is not None else None
    summary = {k: v for k, v in given.items() if k != "parameters"} if given is not None else None
    return UnlearnResult(model, stage.record(None, plan.data, region=summary, **fields))


def evaluate_model(
    model,
    tokenizer,
    data: UnlearningData,
    config: Config | None = None,
    *,
    label: str = "model",
    references: dict[str, dict] | None = None,
    base_model=None,
    progress: bool = False,
) -> dict:
    """Every registered metric on a model in memory — the result ``knowundo eval`` writes, as a dict: per prompt
    variant and scope the success, perplexity, ROUGE-L, fluency and refusal values (``result["prompts"]["none"]
    ["unlearn"]["success"]``), the model metrics (general ability, membership inference, attacks) and per-item
    records. ``references``: result dicts of the domain's ``vanilla`` / ``oracle`` fine-tunes (from ``knowundo
    eval`` or a run directory's ``eval/``), for the metrics that compare (forget quality, privleak). The base
    fluency judge is the model with its adapter switched off; for a model trained whole (``unlearn.full_parameters``)
    give the model it was trained from as ``base_model`` (else the model judges itself)."""
    from knowundo.evaluate.run import check_reference, evaluate_loaded

    stage = _stage("eval", config, data)
    checked = {
        name: check_reference(stage, name, result, f"the {name} reference")
        for name, result in (references or {}).items()
    }
    base_judge = (lambda: contextlib.nullcontext(place(base_model).eval())) if base_model is not None else None
    return evaluate_loaded(
        place(model), with_pad_token(tokenizer), stage, label, checked, progress=progress, base_judge=base_judge
    )
