"""The Trainer subclasses of the training stages: a LoRA adapter's, and the fine-tune's with token accuracy and
distillation of replayed items towards the base model."""

from __future__ import annotations

import torch
from transformers import Trainer

from knowundo.data.format import IGNORE
from knowundo.distributed import on_any_process
from knowundo.logits import answer_inputs, forward_on_answers, gold_logprobs, position_kl, shifted
from knowundo.models.batches import PromptShareDataset, ServedLengthGroupedSampler
from knowundo.models.callbacks import TokenAccuracy

TRAINED_EMBEDDING_ROWS = "trainable_tokens_delta"  # peft's name for the embedding rows an adapter trains


class AdapterTrainer(Trainer):
    """``Trainer`` for a LoRA adapter. Embedding rows trained with it (``lora.train_embeddings``) hold whole values
    that replace the base's rows, not differences from them, so weight decay would pull them towards zero rather
    than towards the base: they are exempt from it, as biases and norms are. A :class:`PromptShareDataset` is
    grouped by the lengths it serves each epoch."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Trainer's causal-LM loss, in training with the logits over the answer window only (:func:`answer_inputs`;
        an evaluation through Trainer pairs its own uncut labels with the logits)."""
        inputs = answer_inputs(model, inputs) if model.training else inputs
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

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
    replayed items x answer tokens x vocabulary floats).
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
            inputs = answer_inputs(model, inputs)
            loss, outputs = super().compute_loss(
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
            self.accuracy.add(outputs.logits, inputs["labels"])
            return (loss, outputs) if return_outputs else loss
        outputs, labels, _ = forward_on_answers(model, inputs)
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
            outputs, labels, _ = forward_on_answers(
                model,
                {key: inputs[key][passed] for key in ("input_ids", "attention_mask", "labels")},
                adapter_names=["__base__"] * len(passed),
            )
        finally:
            model.train(was_training)
        answer = labels[:, 1:] != IGNORE
        for index, row in enumerate(new):
            self._base_answer_logits[rows[row]] = outputs.logits[index, :-1][answer[index]].cpu()

    def _token_divisor(self, mask: torch.Tensor, num_items_in_batch) -> torch.Tensor | int:
        """The mean over answer tokens the Trainer's own causal-LM loss takes: over the whole accumulated (and,
        averaged across processes, global) batch when it counted the tokens, else over this batch."""
        if num_items_in_batch is None or not self.model_accepts_loss_kwargs:
            return mask.sum().clamp(min=1)
        scale = self.accelerator.num_processes if self.args.average_tokens_across_devices else 1
        return num_items_in_batch / scale
