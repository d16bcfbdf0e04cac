"""The unlearning stage: one ``Trainer`` subclass runs every method on a fine-tuned adapter.

Forget items (unlearn train split) are paired 1:1 with retain items (retention train split, or the general set
for the out-of-distribution variants); each side carries explicit per-sample weights from the method's
parameters. When a method reads reference outputs, the fine-tuned adapter is loaded a second time, frozen, under
the name ``reference``: the reference forward pass selects it per batch, costing one adapter's memory instead of
a second model. A region (from localization, or the method's own) freezes every LoRA matrix outside it.

With ``unlearn.full_parameters`` every weight trains instead (the fine-tuned adapter merged into the base first);
the reference is then a frozen copy of the whole model, and a region trains whole modules.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.utils import DistributedType
from peft import PeftModel
from safetensors.torch import save_file
from transformers import set_seed

from knowundo.artifacts import StageOutput, checkpoint_steps, file_hash, relative_path
from knowundo.config import Config, UnlearnConfig, trained_settings
from knowundo.data.format import encode_items, pad_batch, pad_id_of
from knowundo.data.relabel import RelabelContext
from knowundo.distributed import is_main, on_any_process
from knowundo.errors import KnowUndoError
from knowundo.layout import ADAPTER_DIR, CHECKPOINTS_DIR, METHOD_TENSORS, RETAIN_SOURCES, UNLEARN_RECORD, RunLabel
from knowundo.logits import forward_on_answers
from knowundo.methods import Method, Side, check_label, method_params, register, trained_sides
from knowundo.models.batches import FeatureDataset
from knowundo.models.callbacks import PeakMemory
from knowundo.models.load import load_adapter, load_base, trainable_adapter
from knowundo.models.trainers import AdapterTrainer
from knowundo.models.training import batch_record, make_trainer, save_trained, train
from knowundo.region import apply_region, load_region
from knowundo.stage import Stage, adapter_hash

REFERENCE = "reference"


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, value: float):
        super().__init__(f"non-finite loss at step {step} (here {value}; with several processes on any of them)")
        self.step = step


class PairedDataset(FeatureDataset):
    """Item i = forget[i] (+ its alternative answer) with retain[order[i mod len(retain)]], each side tagged with
    its per-sample weight."""

    def __init__(
        self, forget: list[dict], retain: list[dict] | None, params, seed: int, alternative: list[dict] | None = None
    ):
        pairs = []
        order = list(range(len(retain))) if retain else []
        random.Random(seed).shuffle(order)
        for i, f in enumerate(forget):
            pair = {"forget": {**f, "weight": params.forget_weight}}
            if alternative:
                pair["alternative"] = {**alternative[i], "weight": params.forget_weight}
            if retain:
                pair["retain"] = {**retain[order[i % len(order)]], "weight": params.retain_weight}
            pairs.append(pair)
        super().__init__(pairs)


class PairCollator:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, pairs: list[dict]) -> dict[str, dict[str, torch.Tensor]]:
        batch = {}
        for side in pairs[0]:
            features = [p[side] for p in pairs]
            batch[side] = {
                **pad_batch(features, self.pad_id),
                "weight": torch.tensor([f["weight"] for f in features], dtype=torch.float32),
            }
        return batch


def _checked(inputs: dict, side: str) -> dict:
    batch = inputs.get(side)
    if batch is None:
        raise KnowUndoError(f"the batch has no '{side}' side but the method needs it")
    if batch["input_ids"].shape[0] == 0:
        raise KnowUndoError(f"the '{side}' batch is empty")
    weight = batch.get("weight")
    if weight is None or weight.shape != batch["input_ids"].shape[:1]:
        raise KnowUndoError(f"the '{side}' batch has no per-sample weight for every sample")
    return batch


class UnlearnTrainer(AdapterTrainer):
    """``Trainer`` with the method's loss; everything else (optimizer, schedule, accumulation, checkpoints,
    distribution) is the library's.

    A two-sided method's forget term is backpropagated inside ``compute_loss``, before the retain side's forward
    pass, without gradient synchronisation; Trainer then backpropagates the retain term. Both accumulate into the
    same gradients, so the result equals one backward pass of their sum while the activation peak is one side's.
    """

    loss_is_scaled_for_ga = False  # losses are batch means: Trainer divides by the accumulation steps

    def __init__(self, *args, method: Method, params, reference_model=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.method, self.params, self.reference_model = method, params, reference_model
        self.reference_sides = method.reference_sides(params)
        self.sides = trained_sides(method)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        for side in self.sides:  # every side is checked before the first forward pass
            _checked(inputs, side)
        if not self.method.retain:
            loss = self._finite(self.method.forget_loss(self._side(model, inputs, "forget"), self.params))
            return (loss, None) if return_outputs else loss
        with self._gradient_sync_deferred(model):
            forget = self._finite(self.method.forget_loss(self._side(model, inputs, "forget"), self.params))
            self._backward(forget)
        retain = self._finite(self.method.retain_loss(self._side(model, inputs, "retain"), self.params))
        loss = retain + forget.detach()  # the value logged is the whole loss; its gradient is the retain term's
        return (loss, None) if return_outputs else loss

    def _finite(self, loss: torch.Tensor) -> torch.Tensor:
        """Raised before its backward pass, on every process as soon as one has a non-finite loss (so that no
        process waits at the next gradient all-reduce): the weights in memory stay the last good ones."""
        if on_any_process(not bool(torch.isfinite(loss))):
            raise NonFiniteLoss(self.state.global_step, float(loss.detach()))
        return loss

    def _backward(self, loss: torch.Tensor) -> None:
        """The backward pass ``training_step`` would do: scaled by the accumulation steps (DeepSpeed told not to
        scale again)."""
        deepspeed = self.accelerator.distributed_type == DistributedType.DEEPSPEED
        self.accelerator.backward(
            loss / self.current_gradient_accumulation_steps, **({"scale_wrt_gas": False} if deepspeed else {})
        )

    @contextlib.contextmanager
    def _gradient_sync_deferred(self, model):
        """No gradient all-reduce (DDP) and no optimizer step (DeepSpeed) on the first of the two backward
        passes; the retain side's backward pass synchronises as Trainer decides."""
        state = self.accelerator.gradient_state
        synced = state.sync_gradients
        state._set_sync_gradients(False)
        try:
            with self.accelerator.no_sync(model):
                yield
        finally:
            state._set_sync_gradients(synced)

    def _side(self, model, inputs: dict, name: str) -> Side:
        """One side after its forward pass, with what the method reads: reference outputs (the alternative
        answers count as the forget side), hidden states, and for the forget side its alternative answers."""
        batch = inputs[name]
        outputs, labels = self._forward(model, batch)
        reference = None
        if ("retain" if name == "retain" else "forget") in self.reference_sides:
            reference, _ = self._reference(model, batch)  # the same window: the same labels
        alternative = None
        if name == "forget" and "alternative" in self.sides:
            alternative = self._side(model, inputs, "alternative")
        return Side(
            outputs.logits,
            labels,
            batch["weight"],
            reference_logits=reference.logits if reference is not None else None,
            hidden_states=outputs.hidden_states,
            reference_hidden_states=reference.hidden_states if reference is not None else None,
            alternative=alternative,
        )

    def _forward(self, model, batch: dict, **extra):
        """(outputs, labels) over the batch's answer window (:func:`forward_on_answers`): logits, labels and hidden
        states cut alike."""
        outputs, labels, _ = forward_on_answers(model, batch, output_hidden_states=self.method.hidden_states, **extra)
        return outputs, labels

    @torch.no_grad()
    def _reference(self, model, batch: dict):
        """The frozen fine-tuned adapter's outputs: peft's per-sample adapter selection (an inference-mode
        feature, hence eval mode for this pass, which also turns dropout off as a reference should); for a model
        trained whole, its frozen copy's."""
        if self.reference_model is not None:
            return self._forward(self.reference_model, batch)
        was_training = model.training
        model.eval()
        try:
            return self._forward(model, batch, adapter_names=[REFERENCE] * batch["input_ids"].shape[0])
        finally:
            model.train(was_training)


def add_reference(model) -> None:
    """A frozen copy of the trainable ``default`` adapter, named ``reference``: what the fine-tuned model said
    before unlearning (for a model that entered with a fresh LoRA, the model itself: its B matrices are zero)."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    model.add_adapter(REFERENCE, model.peft_config["default"])
    set_peft_model_state_dict(model, get_peft_model_state_dict(model, adapter_name="default"), adapter_name=REFERENCE)
    model.set_adapter("default")  # trainable again; every other adapter frozen
    for name, param in model.named_parameters():
        if f".{REFERENCE}." in name:
            param.requires_grad_(False)


def trainable_whole(model, with_reference: bool):
    """(model, reference or None): a plain model with every weight trainable, in float32 (the optimizer's master
    weights: bfloat16 would round most updates away; the Trainer's autocast still computes in bfloat16 where the
    model runs in it), and — for a method that reads reference outputs — a frozen copy of it as it was, in the
    model's own dtype and eval mode (a second model's memory). Not under DeepSpeed ZeRO-3, whose partitioned
    weights a copy outside the engine cannot hold."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled():
        raise KnowUndoError("unlearn.full_parameters is not supported under DeepSpeed ZeRO-3; use DDP or FSDP")
    reference = copy.deepcopy(model).eval().requires_grad_(False) if with_reference else None
    model.float().requires_grad_(True)
    return model, reference


def prepare_model(cfg: Config, finetuned_adapter: Path | None, with_reference: bool, full_parameters: bool = False):
    """(model, tokenizer, reference model or None). Base + trainable copy of the fine-tuned adapter, or a fresh
    LoRA on a model that already knows its data (+ a frozen copy of the adapter as the reference if needed); with
    ``full_parameters``, the whole model trainable (:func:`trainable_whole`)."""
    model, tokenizer = load_base(cfg)
    if full_parameters:
        if finetuned_adapter is not None:
            model = load_adapter(model, finetuned_adapter).merge_and_unload()
        model, reference = trainable_whole(model, with_reference)
        return model, tokenizer, reference
    model = trainable_adapter(model, finetuned_adapter, cfg)
    if with_reference:
        add_reference(model)
    return model, tokenizer, None


@dataclass(frozen=True)
class UnlearnPlan:
    """One validated unlearning run: what trains, on which data, inside which region; for a stage on disk, from
    which adapter and written where (None for a model given in memory)."""

    stage: Stage
    method: Method
    params: object
    label: RunLabel
    settings: UnlearnConfig
    data: dict  # {"forget": unlearn train items, "retain": retain items or None}
    adapter: Path | None = None
    region: Path | None = None
    output: StageOutput | None = None


def plan_run(stage: Stage, method: str | Method, retain: str = "retention", regioned: bool = False) -> UnlearnPlan:
    """Check a method, its retain data and its parameters against the settings (one-line errors) and gather its
    data; ``regioned``: it trains inside a region it was given."""
    if retain not in RETAIN_SOURCES:
        raise KnowUndoError(f"unknown retain data {retain!r}; choose one of {', '.join(RETAIN_SOURCES)}")
    method_name = method.name if isinstance(method, Method) else method
    if isinstance(method, Method):  # a method given as an object joins the registry as @register would add it
        register(type(method))
    method = check_label(RunLabel(method_name, retain))
    if method.localized and not regioned:
        raise KnowUndoError(
            f"method {method_name!r} unlearns inside a localized region: give it one (--region, "
            f"the region.json written by `knowundo localize`, or a Region)"
        )
    label = RunLabel(method_name, retain, "memflex" if regioned and not method.localized else None)
    check_label(label)
    cfg = stage.cfg
    params = method_params(cfg.unlearn.method_args, method_name, label.label)
    retain_items = None
    if method.retain:
        retain_items = stage.train("retention") if retain == "retention" else stage.general["train"]
    data = {"forget": stage.train("unlearn"), "retain": retain_items}
    settings = cfg.unlearn.for_method(method_name, label.label)  # this row's own settings, not every row's
    return UnlearnPlan(stage, method, params, label, settings, data)


def plan_unlearn(
    cfg: Config,
    domain: str,
    method_name: str,
    finetuned_adapter: str | Path | None,
    out_dir: str | Path,
    retain: str = "retention",
    region: str | Path | None = None,
) -> UnlearnPlan:
    """Check everything about a run before any work (one-line errors): method, retain data, region, settings,
    the adapter, the data and the output directory."""
    plan = plan_run(Stage("unlearn", cfg, domain), method_name, retain, region is not None)
    if region is not None and not Path(region).is_file():
        raise KnowUndoError(f"{region}: region file not found")
    output = plan.stage.output(
        out_dir,
        UNLEARN_RECORD,
        plan.data,
        label=plan.label.label,
        unlearn=trained_settings(plan.settings),
        method_args=dataclasses.asdict(plan.params),
        adapter=adapter_hash(finetuned_adapter),
        region=file_hash(region) if region is not None else None,
    )
    output.finished()  # a directory of other settings is refused now, not after training
    return dataclasses.replace(
        plan,
        adapter=Path(finetuned_adapter) if finetuned_adapter is not None else None,
        region=Path(region) if region is not None else None,
        output=output,
    )


def _training_features(
    plan: UnlearnPlan, params, model, tokenizer
) -> tuple[list[dict], list[dict] | None, list[dict] | None]:
    """(forget features as the method trains on them, their alternative answers, retain features)."""
    method, formatter = plan.method, plan.stage.formatter(tokenizer)
    forget = encode_items(plan.data["forget"], formatter).features
    ctx = RelabelContext(
        model, formatter, torch.Generator().manual_seed(plan.stage.cfg.seed), plan.settings.relabel_batch_size
    )
    alternative = method.alternative_answers(forget, ctx, params)
    if ("alternative" in trained_sides(method)) != bool(alternative):
        raise KnowUndoError(f"method {method.name!r}: alternative_answers must return one answer per forget item")
    forget = method.relabel(forget, ctx, params)
    retain = encode_items(plan.data["retain"], formatter).features if plan.data["retain"] is not None else None
    return forget, alternative, retain


def unlearn(
    cfg: Config,
    domain: str,
    method_name: str,
    finetuned_adapter: str | Path | None,
    out_dir: str | Path,
    retain: str = "retention",
    region: str | Path | None = None,
    progress: bool = True,
    callbacks: list | None = None,
) -> dict:
    """Run one method (inside ``region``, a ``region.json`` from localization, if given); save
    ``out_dir/adapter``, checkpoints every ``unlearn.save_steps`` and the record ``unlearn.json``."""
    plan = plan_unlearn(cfg, domain, method_name, finetuned_adapter, out_dir, retain, region)
    if (record := plan.output.finished()) is not None:
        return record
    model, tokenizer, reference = prepare_model(
        cfg, plan.adapter, bool(plan.method.reference_sides(plan.params)), plan.settings.full_parameters
    )
    masks = load_region(plan.region, model) if plan.region is not None else None
    work = plan.output.begin()
    trainer, fields = train_unlearning(
        plan,
        model,
        tokenizer,
        masks,
        work,
        progress,
        callbacks or [],
        resume=plan.output.last_checkpoint(),
        reference_model=reference,
    )
    save_trained(trainer, work / ADAPTER_DIR)
    return plan.output.commit(
        plan.stage.record(
            plan.output.key,
            plan.data,
            region=relative_path(plan.region, plan.output.out_dir) if plan.region is not None else None,
            region_hash=file_hash(plan.region) if plan.region is not None else None,
            finetuned_adapter=relative_path(plan.adapter, plan.output.out_dir) if plan.adapter is not None else None,
            **fields,
            checkpoints=[path.name for _, path in checkpoint_steps(work / CHECKPOINTS_DIR)],
        )
    )


def unlearning_length(u: UnlearnConfig, batches_per_epoch: int, grad_accum: int) -> dict:
    """How many optimizer steps to train and why: ``unlearn.steps`` if set, else ``unlearn.epochs`` of
    ``ceil(batches / grad_accum)`` steps each (Trainer's count), raised to ``unlearn.min_steps``."""
    per_epoch = max(math.ceil(batches_per_epoch / grad_accum), 1)
    planned, by = (u.steps, "steps") if u.steps > 0 else (math.ceil(u.epochs * per_epoch), "epochs")
    if planned < u.min_steps:
        planned, by = u.min_steps, "min_steps"
    return {"steps": planned, "by": by, "steps_per_epoch": per_epoch, "epochs": planned / per_epoch}


def train_unlearning(
    plan: UnlearnPlan,
    model,
    tokenizer,
    masks: dict[str, torch.Tensor] | None,
    work: Path,
    progress: bool,
    callbacks: list,
    resume: str | None = None,
    reference_model=None,
):
    """The one training loop of every unlearning run, on a model already prepared (trainable ``default`` adapter,
    plus the frozen ``reference`` copy where the method reads it; or a model trained whole, with its frozen copy
    ``reference_model``): the region (``masks``, or the method's own) is
    applied, the method relabels its data, and :class:`UnlearnTrainer` trains; checkpoints go under ``work``.
    Returns the trainer and the record's fields."""
    cfg, method, u = plan.stage.cfg, plan.method, plan.settings
    set_seed(cfg.seed, deterministic=True)
    params = method.resolve(plan.params, model.config)
    masks = masks if masks is not None else method.own_region(model, params)
    if masks is not None:
        apply_region(model, masks, u.weight_decay)
    forget, alternative, retain_features = _training_features(plan, params, model, tokenizer)

    if is_main() and (tensors := method.tensors(params, model.config)):
        save_file({name: t.contiguous() for name, t in tensors.items()}, str(work / METHOD_TENSORS))
    args = plan.stage.training_arguments(
        u, work, plan.label.label, progress, train_sampling_strategy="random", logging_steps=1
    )
    memory = PeakMemory()
    trainer = make_trainer(
        model,
        args,
        PairedDataset(forget, retain_features, params, cfg.seed, alternative),
        PairCollator(pad_id_of(tokenizer)),
        trainer_cls=UnlearnTrainer,
        method=method,
        params=params,
        reference_model=reference_model,
        callbacks=[memory, *callbacks],
    )
    length = unlearning_length(u, len(trainer.get_train_dataloader()), args.gradient_accumulation_steps)
    args.max_steps = length["steps"]
    started = time.perf_counter()
    stopped = None
    first_step = int(resume.rsplit("-", 1)[1]) if resume else 0
    try:
        train(trainer, resume)
    except NonFiniteLoss as exc:  # raised before backward: the weights in memory are the last good ones
        stopped = {"step": exc.step, "reason": str(exc)}
        print(f"knowundo: stopped {plan.label.label} early: {exc}; keeping the weights of step {exc.step}")
    finally:
        memory.stop()
    seconds = time.perf_counter() - started
    steps = trainer.state.global_step
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # unwrap accelerate's wrapper
    history = trainer.state.log_history
    return trainer, dict(
        method=method.name,
        label=plan.label.label,
        method_args=dataclasses.asdict(params),
        batch=batch_record(args),
        optimizer=type(optimizer).__name__,
        scheduler=u.scheduler,
        learning_rate=u.learning_rate,
        optimized_parameters=sum(p.numel() for group in optimizer.param_groups for p in group["params"]),
        learning_rates=[e["learning_rate"] for e in history if "learning_rate" in e],
        retain=plan.label.retain if method.retain else None,
        forget_items=len(forget),
        retain_items=len(retain_features or []),
        steps=steps,
        length=length,
        stopped_early=stopped,
        loss_history=[{"step": e["step"], "loss": e["loss"]} for e in history if "loss" in e],
        seconds_per_step=seconds / max(steps - first_step, 1),
        resumed_from_step=first_step,
        peak_memory_mb=memory.peak_mb,
        start_memory_mb=memory.start_mb,
        peak_memory_since=memory.since,
        full_parameters=not isinstance(model, PeftModel),
        trainable_parameters=sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad),
    )
