"""What every training stage shares: a list-backed dataset, the padding collator and TrainingArguments."""

from __future__ import annotations

import math
import random
import resource
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from knowundo.config import TrainConfig
from knowundo.data.format import IGNORE, pad_batch
from knowundo.distributed import all_reduce_sum, barrier, is_main, on_any_process, per_process_batch, world_size
from knowundo.errors import Interrupted, KnowUndoError
from knowundo.logits import gold_logprobs, position_kl, shifted
from knowundo.placement import device


class FeatureDataset(torch.utils.data.Dataset):
    """Encoded items kept as Python lists; padding happens per batch in :class:`PadCollator`."""

    def __init__(self, features: list[dict]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        return self.features[index]


class PromptShareDataset(FeatureDataset):
    """Features of which some have a second encoding, under a system prompt: each epoch a fresh seeded ``share`` of
    those is served under it, the rest plainly, so every fact is trained both ways over the epochs. (A fixed share
    asked only under prompts was not learned plainly: on the free-English set, 79% token accuracy asked without
    the prompt, against 99.6% for the items trained plainly.) :class:`SetEpoch` tells it the epoch."""

    def __init__(self, features: list[dict], prompted: dict[int, dict], share: float, seed: int):
        super().__init__(features)
        self.prompted, self.share, self.seed = prompted, share, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        rng = random.Random(f"{self.seed}/{epoch}")
        self.asked = {index for index in sorted(self.prompted) if rng.random() < self.share}

    def __getitem__(self, index: int) -> dict:
        return self.prompted[index] if index in self.asked else self.features[index]


class SetEpoch(TrainerCallback):
    """Tells a dataset which epoch begins (a resumed one from its fractional start). accelerate's dataloader does
    so too, but only when its sampler takes no epoch (an ``elif`` in accelerate 1.15); this does not depend on it."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor(state.epoch + 1e-6))


class ServedLengthGroupedSampler(LengthGroupedSampler):
    """Trainer's length grouping, by the lengths the dataset serves in the epoch that begins: a
    :class:`PromptShareDataset` changes them with each draw (grouped by the first epoch's lengths, the privacy
    fine-tune padded its batches to 1.7x as many positions and ran 1.9x as long)."""

    def __init__(self, batch_size: int, dataset: PromptShareDataset):
        super().__init__(batch_size, dataset=dataset)
        self.dataset = dataset

    def __iter__(self):
        self.lengths = [len(self.dataset[index]["input_ids"]) for index in range(len(self.dataset))]
        return super().__iter__()


class PadCollator:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        return pad_batch(features, self.pad_id)


def training_arguments(
    output_dir: Path,
    train: TrainConfig,
    *,
    seed: int,
    progress: bool = True,
    bf16: bool = False,
    report_to: list | None = None,
    run_name: str | None = None,
    **extra,
) -> TrainingArguments:
    """One stage's TrainConfig as TrainingArguments with our conventions: seeded, losses kept in the stage record
    rather than printed, the configured effective batch kept whatever the number of processes (per-device x
    accumulation x processes = batch_size x grad_accum), and only the reporting integrations asked for
    (``report_to``; the run named ``run_name``)."""
    per_device, accumulation = per_process_batch(train.batch_size, train.grad_accum)
    settings = dict(
        output_dir=str(output_dir),
        seed=seed,
        data_seed=seed,
        num_train_epochs=train.epochs,
        learning_rate=train.learning_rate,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        weight_decay=train.weight_decay,
        warmup_steps=train.warmup_ratio,
        lr_scheduler_type=train.scheduler,
        logging_steps=10,
        report_to=list(report_to or []) or "none",
        run_name=run_name,
        disable_tqdm=not progress,
        save_strategy="steps" if train.save_steps else "no",
        save_steps=train.save_steps or 500,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        bf16=bf16,
        dataloader_pin_memory=torch.cuda.is_available(),
        train_sampling_strategy="group_by_length",
        use_cpu=device().type == "cpu",  # also what makes torchrun on CPU data-parallel (gloo)
        gradient_checkpointing=train.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if train.gradient_checkpointing else None,
    )
    settings.update(extra)
    return TrainingArguments(**settings)


class _BarOnly(ProgressCallback):
    """The progress bar without a printed dict per logging step (losses are kept in the stage record)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


class GracefulStop(TrainerCallback):
    """First Ctrl-C (SIGINT): finish the current optimizer step, save a checkpoint and stop, so that the same
    command resumes from there. A second Ctrl-C aborts at once (nothing finished is lost either way: stages
    only publish complete outputs)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nknowundo: stopping after this step (Ctrl-C again to abort now)", file=sys.stderr, flush=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self.restore()

    def restore(self) -> None:
        """Give Ctrl-C back to whoever had it (also when training raised)."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class TokenAccuracy(TrainerCallback):
    """Train-set token accuracy per epoch: the share of answer tokens the model predicted (argmax) in the forward
    passes the loss already made during that epoch (no extra pass; summed over processes). With a ``target``,
    training stops at the end of the first epoch that reaches it."""

    def __init__(self, target: float | None = None):
        self.target = target
        self.per_epoch: list[float] = []
        self._counts: torch.Tensor | None = None  # correct, total answer tokens of the epoch so far

    @torch.no_grad()
    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        gold = labels[:, 1:]
        mask = gold != IGNORE
        predicted = logits[:, :-1].argmax(-1)
        counts = torch.stack([(predicted[mask] == gold[mask]).sum(), mask.sum()]).to(torch.float64)
        # kept on the logits' device: no host synchronisation per training step
        self._counts = counts if self._counts is None else self._counts + counts

    def on_epoch_end(self, args, state, control, **kwargs):
        counts = self._counts if self._counts is not None else torch.zeros(2, dtype=torch.float64)
        correct, total = all_reduce_sum(counts.clone()).tolist()
        self._counts = None
        self.per_epoch.append(correct / total if total else 0.0)
        if self.target is not None and self.per_epoch[-1] >= self.target:
            control.should_training_stop = True

    @property
    def reached(self) -> bool | None:
        return None if self.target is None else bool(self.per_epoch) and self.per_epoch[-1] >= self.target


TRAINED_EMBEDDING_ROWS = "trainable_tokens_delta"  # peft's name for the embedding rows an adapter trains


class AdapterTrainer(Trainer):
    """``Trainer`` for a LoRA adapter. Embedding rows trained with it (``lora.train_embeddings``) hold whole values
    that replace the base's rows, not differences from them, so weight decay would pull them towards zero rather
    than towards the base: they are exempt from it, as biases and norms are. A :class:`PromptShareDataset` is
    grouped by the lengths it serves each epoch."""

    def get_decay_parameter_names(self, model) -> list[str]:
        return [name for name in super().get_decay_parameter_names(model) if TRAINED_EMBEDDING_ROWS not in name]

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if isinstance(dataset, PromptShareDataset) and self.args.train_sampling_strategy == "group_by_length":
            return ServedLengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps, dataset
            )
        return super()._get_train_sampler(train_dataset)


class AccuracyTrainer(AdapterTrainer):
    """The fine-tune's Trainer: :class:`TokenAccuracy` fed from each training forward pass, and replayed items
    (``replay_id`` >= 0: general knowledge under ``finetune.replay_loss: kl``) trained towards the base model's
    own next-token distribution instead of their gold answers. The base is frozen, so its answer-position logits
    are computed once per item, on the first batch that holds it, and kept for the later epochs (on the CPU:
    replayed items x answer tokens x vocabulary, ~0.2 GB for the bundled general set and a 32k vocabulary).
    Train accuracy counts only the items trained on their gold answers."""

    def __init__(self, *args, accuracy: TokenAccuracy, **kwargs):
        super().__init__(*args, **kwargs)
        self.accuracy = accuracy
        self.add_callback(accuracy)
        self._base_answer_logits: dict[int, torch.Tensor] = {}  # replay_id -> [answer tokens, vocabulary]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        replay_ids = inputs.pop("replay_id", None)
        if replay_ids is not None:
            self._keep_base_logits(model, inputs, replay_ids)
        distil = replay_ids >= 0 if replay_ids is not None else None
        if distil is None or not bool(distil.any()):
            loss, outputs = super().compute_loss(
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
            self.accuracy.add(outputs.logits, inputs["labels"])
            return (loss, outputs) if return_outputs else loss
        labels = inputs["labels"]
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        logits, targets, mask = shifted(outputs.logits, labels)
        gold = ~distil
        summed = -(gold_logprobs(logits[gold], targets[gold]) * mask[gold]).sum()
        base = torch.cat([self._base_answer_logits[key] for key in replay_ids.tolist() if key >= 0])
        summed = summed + position_kl(logits[distil], base.to(logits.device), mask[distil]).sum()
        self.accuracy.add(outputs.logits[gold], labels[gold])
        loss = summed / self._token_divisor(mask, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    @torch.no_grad()
    def _keep_base_logits(self, model, inputs: dict, replay_ids: torch.Tensor) -> None:
        """Keeps the base model's logits at the answer positions of the batch's replayed rows not seen yet: they go
        through peft's per-sample adapter selection with its no-adapter name (a forward argument, so it passes
        through DDP / DeepSpeed wrappers; an inference-mode feature, hence eval mode). Every process runs this
        pass when any needs it, one with nothing new on its first row (result dropped): under ZeRO-3 each forward
        gathers the sharded parameters from all processes, so a pass on one process alone would hang the run."""
        rows = replay_ids.tolist()
        new = [row for row, key in enumerate(rows) if key >= 0 and key not in self._base_answer_logits]
        if not on_any_process(bool(new)):
            return
        passed = new or [0]
        was_training = model.training
        model.eval()
        try:
            logits = model(
                input_ids=inputs["input_ids"][passed],
                attention_mask=inputs["attention_mask"][passed],
                adapter_names=["__base__"] * len(passed),
            ).logits
        finally:
            model.train(was_training)
        answer = inputs["labels"][:, 1:] != IGNORE
        for row, row_logits in zip(new, logits):
            self._base_answer_logits[rows[row]] = row_logits[:-1][answer[row]].cpu()

    def _token_divisor(self, mask: torch.Tensor, num_items_in_batch) -> torch.Tensor | int:
        """The mean over answer tokens the Trainer's own causal-LM loss takes: over the whole accumulated (and,
        averaged across processes, global) batch when it counted the tokens, else over this batch."""
        if num_items_in_batch is None or not self.model_accepts_loss_kwargs:
            return mask.sum().clamp(min=1)
        scale = self.accelerator.num_processes if self.args.average_tokens_across_devices else 1
        return num_items_in_batch / scale


class ReplayIdCollator(PadCollator):
    """:class:`PadCollator` plus each item's ``replay_id`` (its place in the replayed set; -1 for the items
    trained on their gold answers)."""

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = super().__call__(features)  # pad_batch reads only input_ids and labels
        batch["replay_id"] = torch.tensor([f.get("replay_id", -1) for f in features])
        return batch


def make_trainer(model, args: TrainingArguments, dataset, collator, trainer_cls=AdapterTrainer, **kwargs) -> Trainer:
    if args.gradient_checkpointing:
        # with frozen embeddings a checkpointed LoRA model would get no input gradient and train nothing
        model.enable_input_require_grads()
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, data_collator=collator, **kwargs)
    trainer.pop_callback(PrinterCallback)  # without a bar, Trainer would print every log dict instead
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(_BarOnly)
    trainer.add_callback(GracefulStop())
    return trainer


def train(trainer: Trainer, resume_from_checkpoint: str | None):
    """``trainer.train``, resuming if a checkpoint is given; a graceful stop becomes :class:`Interrupted`
    (after its checkpoint is saved) so that the stage publishes nothing."""
    stop = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, GracefulStop))
    try:
        result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    except Exception as exc:
        if type(exc).__name__ != "UnpicklingError":  # torch.load(weights_only=True) refused a checkpoint file
            raise
        raise KnowUndoError(
            f"{resume_from_checkpoint}: refused to load a checkpoint file that is not plain "
            f"tensors ({str(exc).splitlines()[0][:120]}); remove the checkpoint to start over"
        ) from None
    finally:
        stop.restore()
        _keep_logs(Path(trainer.args.output_dir))
    if stop.requested:
        raise Interrupted(
            f"stopped after step {trainer.state.global_step} with a checkpoint saved; run the same "
            f"command again to resume"
        )
    return result


LOGS_DIR = "logs"


def _keep_logs(output_dir: Path) -> None:
    """TensorBoard writes under the Trainer's output directory (``runs/``, beside the checkpoints that a stage may
    delete once done): its event files move next to the stage's record, ``logs/``."""
    written = output_dir / "runs"
    if is_main() and written.is_dir():
        kept = output_dir.parent / LOGS_DIR
        kept.mkdir(exist_ok=True)
        for run in written.iterdir():
            shutil.move(str(run), str(kept / run.name))
        written.rmdir()


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


class PeakMemory(TrainerCallback):
    """Peak memory while the Trainer trains (model loading excluded; paper Table 5): allocated memory on a GPU,
    process RSS sampled every 2 ms on CPU (interpreter and libraries included). ``start_mb`` is the level at
    the start of training."""

    def __init__(self):
        self.start_mb = self.peak_mb = 0.0
        self._sampling = False
        self._thread: threading.Thread | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            self.start_mb = torch.cuda.memory_allocated() / 2**20
            return
        self.start_mb = self.peak_mb = _rss_mb()
        self._sampling = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self):
        while self._sampling:
            self.peak_mb = max(self.peak_mb, _rss_mb())
            time.sleep(0.002)

    def on_train_end(self, args, state, control, **kwargs):
        self.stop()

    def stop(self) -> float:
        """End sampling (also after an exception inside training) and return the peak in MB."""
        if torch.cuda.is_available():
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        elif self._thread is not None:
            self._sampling = False
            self._thread.join()
            self._thread = None
            self.peak_mb = max(self.peak_mb, _rss_mb())
        return self.peak_mb


def batch_record(args: TrainingArguments) -> dict:
    """How the effective batch was laid out in this run (stage records state it)."""
    return {
        "per_device": args.per_device_train_batch_size,
        "grad_accum": args.gradient_accumulation_steps,
        "processes": world_size(),
        "effective": args.per_device_train_batch_size * args.gradient_accumulation_steps * world_size(),
    }


def save_adapter(trainer: Trainer, target: Path, adapter: str = "default") -> None:
    """Save the trained LoRA adapter as safetensors through ``Trainer.save_model`` (which gathers ZeRO-3 /
    FSDP shards and writes on the main process only), keeping only ``adapter`` and no pickled
    ``training_args.bin``."""
    import shutil

    trainer.save_model(str(target))
    if is_main():
        (Path(target) / "training_args.bin").unlink(missing_ok=True)
        for name in trainer.model.peft_config:
            if name != adapter:
                shutil.rmtree(Path(target) / name, ignore_errors=True)
    barrier()
