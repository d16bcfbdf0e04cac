"""What every training stage shares: a list-backed dataset, the padding collator and TrainingArguments."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from knowundo.config import TrainConfig
from knowundo.data.format import pad_batch


class FeatureDataset(torch.utils.data.Dataset):
    """Encoded items kept as Python lists; padding happens per batch in :class:`PadCollator`."""

    def __init__(self, features: list[dict]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        return self.features[index]


class PadCollator:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        return pad_batch(features, self.pad_id)


def training_arguments(output_dir: Path, train: TrainConfig, *, seed: int, progress: bool = True,
                       bf16: bool = False, **extra) -> TrainingArguments:
    """One stage's TrainConfig as TrainingArguments with our conventions: seeded, no reporting integrations,
    losses kept in the stage record rather than printed."""
    settings = dict(
        output_dir=str(output_dir), seed=seed, data_seed=seed, num_train_epochs=train.epochs,
        learning_rate=train.learning_rate, per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum, weight_decay=train.weight_decay,
        warmup_steps=train.warmup_ratio, lr_scheduler_type=train.scheduler, logging_steps=10, report_to="none",
        disable_tqdm=not progress, save_strategy="steps" if train.save_steps else "no",
        save_steps=train.save_steps or 500, remove_unused_columns=False, dataloader_num_workers=0, bf16=bf16,
        dataloader_pin_memory=torch.cuda.is_available(), train_sampling_strategy="group_by_length",
        gradient_checkpointing=train.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if train.gradient_checkpointing else None,
    )
    settings.update(extra)
    return TrainingArguments(**settings)


class _BarOnly(ProgressCallback):
    """The progress bar without a printed dict per logging step (losses are kept in the stage record)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


def make_trainer(model, args: TrainingArguments, dataset, collator, trainer_cls=Trainer, **kwargs) -> Trainer:
    if args.gradient_checkpointing:
        # with frozen embeddings a checkpointed LoRA model would get no input gradient and train nothing
        model.enable_input_require_grads()
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, data_collator=collator, **kwargs)
    trainer.pop_callback(PrinterCallback)  # without a bar, Trainer would print every log dict instead
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(_BarOnly)
    return trainer
