"""What every training stage shares: its TrainingArguments, the Trainer built and run with our callbacks, its logs
kept and its adapter saved."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from knowundo.config import TrainConfig
from knowundo.distributed import barrier, is_main, per_process_batch, world_size
from knowundo.errors import Interrupted, KnowUndoError
from knowundo.models.callbacks import BarOnly, GracefulStop
from knowundo.models.trainers import AdapterTrainer
from knowundo.placement import device


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
        activation_checkpointing=train.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if train.gradient_checkpointing else None,
    )
    settings.update(extra)
    return TrainingArguments(**settings)


def make_trainer(model, args: TrainingArguments, dataset, collator, trainer_cls=AdapterTrainer, **kwargs) -> Trainer:
    if args.activation_checkpointing:
        # with frozen embeddings a checkpointed LoRA model would get no input gradient and train nothing
        model.enable_input_require_grads()
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, data_collator=collator, **kwargs)
    trainer.pop_callback(PrinterCallback)  # without a bar, Trainer would print every log dict instead
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(BarOnly)
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


def batch_record(args: TrainingArguments) -> dict:
    """How the effective batch was laid out in this run (stage records state it)."""
    return {
        "per_device": args.per_device_train_batch_size,
        "grad_accum": args.gradient_accumulation_steps,
        "processes": world_size(),
        "effective": args.per_device_train_batch_size * args.gradient_accumulation_steps * world_size(),
    }


def save_trained(trainer: Trainer, target: Path, adapter: str = "default") -> None:
    """Save what trained — the LoRA adapter, or the whole model of a full-parameter run — as safetensors through
    ``Trainer.save_model`` (which gathers ZeRO-3 / FSDP shards and writes on the main process only), keeping only
    ``adapter`` and no pickled ``training_args.bin``."""
    trainer.save_model(str(target))
    if is_main():
        (Path(target) / "training_args.bin").unlink(missing_ok=True)
        for name in getattr(trainer.model, "peft_config", {}):
            if name != adapter:
                shutil.rmtree(Path(target) / name, ignore_errors=True)
    barrier()
