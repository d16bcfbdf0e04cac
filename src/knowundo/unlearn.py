"""The unlearning stage: one ``Trainer`` subclass runs every method on a fine-tuned adapter.

Forget items (unlearn train split) are paired 1:1 with retain items (retention train split, or the general set
for the out-of-distribution variants); each side carries explicit per-sample weights. For KL methods the
fine-tuned adapter is loaded a second time, frozen, under the name ``reference``: the reference forward pass
selects it per batch, costing one adapter's memory instead of a second model.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch
from transformers import Trainer, set_seed

from knowundo.artifacts import StageOutput, checkpoint_steps, file_hash, hash_json, library_versions
from knowundo.config import Config
from knowundo.data.format import Formatter, encode_items, pad_batch, pad_id_of
from knowundo.data.knowundo import DataSource, load_domain, load_general
from knowundo.errors import KnowUndoError
from knowundo.localize import apply_region, load_region
from knowundo.methods import Method, RelabelContext, Side, get_method
from knowundo.models.load import adapter_weights, load_adapter, load_base
from knowundo.models.training import (FeatureDataset, PeakMemory, batch_record, make_trainer, save_adapter, train,
                                      training_arguments)

RECORD = "unlearn.json"
REFERENCE = "reference"
RETAIN_SOURCES = ("retention", "general")


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, value: float):
        super().__init__(f"non-finite loss {value} at step {step}")
        self.step, self.value = step, value


class PairedDataset(FeatureDataset):
    """Item i = forget[i] with retain[order[i mod len(retain)]], each tagged with its method weight."""

    def __init__(self, forget: list[dict], retain: list[dict] | None, method: Method, seed: int):
        pairs = []
        order = list(range(len(retain))) if retain else []
        random.Random(seed).shuffle(order)
        for i, f in enumerate(forget):
            pair = {"forget": {**f, "weight": method.forget_weight}}
            if retain:
                pair["retain"] = {**retain[order[i % len(order)]], "weight": method.retain_weight}
            pairs.append(pair)
        super().__init__(pairs)


class PairCollator:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, pairs: list[dict]) -> dict[str, dict[str, torch.Tensor]]:
        batch = {}
        for side in pairs[0]:
            features = [p[side] for p in pairs]
            batch[side] = {**pad_batch(features, self.pad_id),
                           "weight": torch.tensor([f["weight"] for f in features], dtype=torch.float32)}
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


class UnlearnTrainer(Trainer):
    """``Trainer`` with the method's loss; everything else (optimizer, schedule, accumulation, checkpoints,
    distribution) is the library's."""

    def __init__(self, *args, method: Method, **kwargs):
        super().__init__(*args, **kwargs)
        self.method = method

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        forget = self._side(model, _checked(inputs, "forget"), reference=False)
        retain = None
        if self.method.retain_weight is not None:
            retain = self._side(model, _checked(inputs, "retain"), reference=self.method.needs_reference)
        loss = self.method.loss(forget, retain)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(self.state.global_step, float(loss.detach()))
        return (loss, None) if return_outputs else loss

    def _side(self, model, batch: dict, reference: bool) -> Side:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return Side(logits, batch["labels"], batch["weight"],
                    reference_logits=self._reference_logits(model, batch) if reference else None)

    @torch.no_grad()
    def _reference_logits(self, model, batch: dict) -> torch.Tensor:
        """The frozen fine-tuned adapter's logits: peft's per-sample adapter selection (an inference-mode
        feature, hence eval mode for this pass, which also turns dropout off as a reference should)."""
        was_training = model.training
        model.eval()
        try:
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         adapter_names=[REFERENCE] * batch["input_ids"].shape[0]).logits
        finally:
            model.train(was_training)


def unlearn_key(cfg: Config, domain: str, method: str, retain: str, finetuned: Path, data,
                region_hash: str | None) -> str:
    settings = {k: cfg.to_dict()[k] for k in ("seed", "model", "data", "unlearn")}
    return hash_json({"stage": "unlearn", "domain": domain, "method": method, "retain": retain,
                      "region": region_hash,
                      "settings": settings, "adapter": file_hash(adapter_weights(finetuned)),
                      "data": hash_json(data)})


def prepare_model(cfg: Config, finetuned_adapter: Path, method: Method, progress: bool = True):
    """Base + trainable copy of the fine-tuned adapter (+ a frozen copy as KL reference if needed)."""
    model, tokenizer = load_base(cfg, progress=progress)
    model = load_adapter(model, finetuned_adapter, trainable=True)
    if method.needs_reference:
        model.load_adapter(str(finetuned_adapter), adapter_name=REFERENCE, is_trainable=False)
        model.set_adapter("default")
    return model, tokenizer


def unlearn(cfg: Config, domain: str, method_name: str, finetuned_adapter: str | Path, out_dir: str | Path,
            retain: str = "retention", region: str | Path | None = None, progress: bool = True,
            callbacks: list | None = None) -> dict:
    """Run one method, restricted to ``region`` (a ``region.json`` from localize) if given; save
    ``out_dir/adapter``, checkpoints every ``unlearn.save_steps`` and the record."""
    method = get_method(method_name)
    if method.needs_region and region is None:
        raise KnowUndoError(f"method {method_name!r} unlearns inside a localized region: pass --region "
                            f"(the region.json written by `knowundo localize`)")
    if retain not in RETAIN_SOURCES:
        raise KnowUndoError(f"unknown retain data {retain!r}; choose one of {', '.join(RETAIN_SOURCES)}")
    if retain == "general" and method.retain_weight is None:
        raise KnowUndoError(f"--general chooses retain data, but method {method_name!r} uses none")
    finetuned_adapter = Path(finetuned_adapter)
    adapter_weights(finetuned_adapter)
    source = DataSource.from_config(cfg.data)
    data = load_domain(source, domain)
    retain_items = (data["retention"]["train"] if retain == "retention" else load_general(source)["train"])
    if region is not None and not Path(region).is_file():
        raise KnowUndoError(f"{region}: region file not found")
    region_hash = file_hash(region) if region is not None else None
    stage = StageOutput(out_dir, unlearn_key(cfg, domain, method_name, retain, finetuned_adapter,
                                             {"forget": data["unlearn"]["train"], "retain": retain_items},
                                             region_hash), RECORD)
    if (record := stage.finished()) is not None:
        return record

    u = cfg.unlearn.for_method(method_name)
    set_seed(cfg.seed, deterministic=True)
    model, tokenizer = prepare_model(cfg, finetuned_adapter, method, progress)
    if region is not None:
        apply_region(model, load_region(region, model), u.weight_decay)
    formatter = Formatter(tokenizer, cfg.model.template, cfg.model.max_length)
    forget = encode_items(data["unlearn"]["train"], formatter)
    retain_features = encode_items(retain_items, formatter).features if method.retain_weight is not None else None
    features = forget.features
    if method.relabel is not None:
        generator = torch.Generator().manual_seed(cfg.seed)
        features = method.relabel(features, RelabelContext(model, tokenizer, generator, u.adversarial_top_k,
                                                           u.adversarial_top_p, cfg.eval.batch_size))

    work = stage.begin()
    args = training_arguments(work / "checkpoints", u, seed=cfg.seed, progress=progress,
                              bf16=cfg.model.dtype == "bfloat16", train_sampling_strategy="random", logging_steps=1)
    memory = PeakMemory()
    trainer = make_trainer(model, args, PairedDataset(features, retain_features, method, cfg.seed),
                           PairCollator(pad_id_of(tokenizer)), trainer_cls=UnlearnTrainer, method=method,
                           callbacks=[memory, *(callbacks or [])])
    started = time.perf_counter()
    stopped = None
    resume = stage.last_checkpoint()
    first_step = int(resume.rsplit("-", 1)[1]) if resume else 0
    try:
        train(trainer, resume)
    except NonFiniteLoss as exc:  # raised before backward: the weights in memory are the last good ones
        stopped = {"step": exc.step, "reason": str(exc)}
        print(f"knowundo: stopped {method_name} early: {exc}; keeping the weights of step {exc.step}")
    finally:
        memory.stop()
    seconds = time.perf_counter() - started
    save_adapter(trainer, work / "adapter")
    steps = trainer.state.global_step
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # unwrap accelerate's wrapper
    return stage.commit({
        "stage": "unlearn", "domain": domain, "method": method_name, "key": stage.key, "seed": cfg.seed,
        "data_hash": hash_json({"forget": data["unlearn"]["train"], "retain": retain_items}),
        "region": str(region) if region is not None else None, "region_hash": region_hash,
        "batch": batch_record(args), "optimizer": type(optimizer).__name__, "scheduler": u.scheduler,
        "learning_rate": u.learning_rate,
        "optimized_parameters": sum(p.numel() for group in optimizer.param_groups for p in group["params"]),
        "learning_rates": [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e],
        "retain": retain if method.retain_weight is not None else None,
        "config": cfg.to_dict(), "finetuned_adapter": str(finetuned_adapter), "forget_items": len(features),
        "retain_items": len(retain_features or []), "steps": steps, "stopped_early": stopped,
        "loss_history": [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e],
        "seconds_per_step": seconds / max(steps - first_step, 1), "resumed_from_step": first_step,
        "peak_memory_mb": memory.peak_mb,
        "start_memory_mb": memory.start_mb, "trainable_parameters": model.get_nb_trainable_parameters()[0],
        "checkpoints": [path.name for _, path in checkpoint_steps(work / "checkpoints")],
        "versions": library_versions(),
    })

