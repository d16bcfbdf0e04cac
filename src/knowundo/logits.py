"""The one place where logits meet labels.

``logits[:, t]`` predicts ``input_ids[:, t + 1]``; every metric, loss, relabelling and KL uses this shift and
the answer-only mask (labels == -100 elsewhere), in float32 whatever dtype the model runs in. Every forward pass that
scores answers computes its logits over the batch's answer window only (:func:`forward_on_answers`).
"""

from __future__ import annotations

import inspect
from functools import cache

import torch

from knowundo.data.format import IGNORE


def shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(float32 logits at t, gold token at t+1, answer mask) aligned so that position t predicts t+1."""
    targets = labels[:, 1:]
    mask = targets != IGNORE
    return logits[:, :-1].float(), targets.masked_fill(~mask, 0), mask


def gold_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at every position of already-shifted float32 logits."""
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(gold) per position, zero off the answer; answer mask), both [batch, length - 1]."""
    logits, targets, mask = shifted(logits, labels)
    return gold_logprobs(logits, targets) * mask, mask


def per_sample_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over each sample's answer tokens (float32), shape [batch]."""
    logprob, mask = token_logprobs(logits, labels)
    return -logprob.sum(-1) / mask.sum(-1).clamp(min=1)


def position_kl(logits: torch.Tensor, target_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(target || current) at each answer position of already-shifted logits, flat in ``mask`` order (float32;
    only the answer positions are materialised at vocabulary width)."""
    return torch.nn.functional.kl_div(
        torch.log_softmax(logits[mask].float(), dim=-1),
        torch.log_softmax(target_logits.float(), dim=-1),
        log_target=True,
        reduction="none",
    ).sum(-1)


def answer_window(labels: torch.Tensor) -> slice:
    """The positions whose logits a loss on ``labels`` reads, with the labels cut alike: from the position before
    the batch's first answer token to its last answer token. Shifting the cut logits and labels as usual pairs
    every answer token with the logits that predict it, as over the whole sequence. No answer: everything."""
    answer = (labels != IGNORE).any(0).nonzero()
    if answer.numel() == 0:
        return slice(0, labels.shape[1])
    return slice(max(int(answer[0]) - 1, 0), int(answer[-1]) + 1)


@cache
def _keeps_logits(model_type: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_type.forward).parameters


def keeps_logits(model) -> bool:
    """Whether the model (under a DDP / DeepSpeed wrapper or peft) computes logits at chosen positions only
    (transformers' ``logits_to_keep``, which every current causal LM takes). Not under ``nn.DataParallel``, which
    would split the positions' index tensor across its replicas."""
    if isinstance(model, torch.nn.DataParallel):
        return False
    inner = getattr(model, "module", model)
    inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    return _keeps_logits(type(inner))


def _window_for(model, labels: torch.Tensor) -> slice | None:
    """The answer window to compute logits over, or None where the whole sequence is computed anyway."""
    if not keeps_logits(model):
        return None
    window = answer_window(labels)
    return None if window.stop - window.start == labels.shape[1] else window


def answer_inputs(model, inputs: dict) -> dict:
    """``inputs`` (with ``labels``) for a forward pass that computes logits over the answer window only, labels cut
    alike (:func:`answer_window`): the LM head — a projection onto the whole vocabulary — skips the question's
    positions, a third to a half of a chat-formatted item. Unchanged where the model cannot, or where the
    inputs are already cut."""
    window = None if "logits_to_keep" in inputs else _window_for(model, inputs["labels"])
    if window is None:
        return inputs
    kept = torch.arange(window.start, window.stop, device=inputs["labels"].device)
    return {**inputs, "labels": inputs["labels"][:, window], "logits_to_keep": kept}


def forward_on_answers(model, batch: dict, **kwargs):
    """(outputs, labels, window) of ``model`` on a padded batch: logits over the answer window only, the labels and
    any hidden states (``output_hidden_states``) cut to the same window, so that everything aligns as over the
    whole sequence; ``window`` is where the cut starts and ends in the batch."""
    labels = batch["labels"]
    window = _window_for(model, labels)
    if window is None:
        outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)
        return outputs, labels, slice(0, labels.shape[1])
    kept = torch.arange(window.start, window.stop, device=labels.device)
    outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=kept, **kwargs)
    if getattr(outputs, "hidden_states", None) is not None:
        outputs.hidden_states = tuple(h[:, window] for h in outputs.hidden_states)
    return outputs, labels[:, window], window
