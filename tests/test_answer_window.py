"""The LM head over the answer window only: every consumer of a windowed pass — shifted losses, token statistics,
hidden states, Trainer's own causal-LM loss — gets what it gets from the whole sequence."""

from __future__ import annotations

import copy

import pytest
import torch

from knowundo.data.format import IGNORE
from knowundo.logits import answer_inputs, answer_window, forward_on_answers, keeps_logits, per_sample_nll


@pytest.fixture(scope="module")
def lora_model(tiny_model, micro_config):
    """A LoRA-wrapped copy of the micro tiny base (the peft wrapper must pass the positions through)."""
    from knowundo.models.load import attach_lora

    model, _ = tiny_model
    wrapped = attach_lora(copy.deepcopy(model), micro_config())
    with torch.no_grad():  # non-zero B matrices: the adapter changes the logits
        for name, param in wrapped.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    return wrapped.eval()


def _batch(answers: list[tuple[int, int]], length: int = 24, vocab: int = 500) -> dict:
    """Right-padded rows of random tokens; row i's answer spans positions [start, stop) (an empty span: no answer)."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (len(answers), length), generator=generator)
    labels = torch.full_like(ids, IGNORE)
    mask = torch.ones_like(ids)
    for row, (start, stop) in enumerate(answers):
        labels[row, start:stop] = ids[row, start:stop]
        mask[row, max(stop, 18 + row) :] = 0  # padding after each row's end
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_the_window_spans_every_rows_answer_and_the_position_before():
    batch = _batch([(9, 15), (12, 20), (0, 0)])
    assert answer_window(batch["labels"]) == slice(8, 20)
    assert answer_window(torch.full((2, 6), IGNORE)) == slice(0, 6)


def test_windowed_scores_and_hidden_states_equal_the_whole_sequences(lora_model):
    from knowundo.evaluate.teacher_forced import answer_token_stats
    from knowundo.methods.rmu import _answer_mse

    batch = _batch([(9, 15), (12, 20), (0, 0), (10, 13)])
    assert keeps_logits(lora_model)
    with torch.no_grad():
        whole = lora_model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True
        )
        cut, labels, window = forward_on_answers(lora_model, batch, output_hidden_states=True)
    assert window == slice(8, 20) and cut.logits.shape[1] == 12
    assert torch.equal(cut.logits, whole.logits[:, window])
    answered = torch.tensor([True, True, False, True])
    assert torch.allclose(
        per_sample_nll(cut.logits, labels)[answered], per_sample_nll(whole.logits, batch["labels"])[answered]
    )
    full_stats, cut_stats = answer_token_stats(whole.logits, batch["labels"]), answer_token_stats(cut.logits, labels)
    for key in ("tokens", "correct", "logprob", "min_k_logprob"):
        assert torch.allclose(full_stats[key], cut_stats[key]), key
    target = torch.ones(whole.hidden_states[1].shape[-1])
    assert torch.allclose(
        _answer_mse(whole.hidden_states[1], target, batch["labels"]), _answer_mse(cut.hidden_states[1], target, labels)
    )


def test_trainers_own_loss_is_the_same_over_the_window(lora_model):
    batch = _batch([(9, 15), (12, 20), (10, 13)])
    with torch.no_grad():
        whole = lora_model(**batch).loss
        inputs = answer_inputs(lora_model, batch)
        cut = lora_model(**inputs).loss
    assert inputs["labels"].shape[1] == 12 and inputs["logits_to_keep"].tolist() == list(range(8, 20))
    assert torch.allclose(whole, cut)
    assert answer_inputs(lora_model, inputs) is inputs  # already cut: left alone


def test_a_whole_sequence_window_or_a_data_parallel_model_passes_nothing(lora_model):
    batch = _batch([(1, 24), (3, 10)])
    assert answer_inputs(lora_model, batch) is batch
    assert not keeps_logits(torch.nn.DataParallel(lora_model))
