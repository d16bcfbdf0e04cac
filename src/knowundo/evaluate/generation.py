"""The generation pass: batched greedy decoding of every item's answer (metrics on the text live in ``metrics/``)."""

from __future__ import annotations

import torch

from knowundo.data.format import Formatter, pad_batch, pad_id_of
from knowundo.placement import on_device


@torch.no_grad()
def greedy_generate(
    model, tokenizer, prompts: list[list[int]], batch_size: int, max_new_tokens: int, stop_ids: list[int] | None = None
) -> list[dict]:
    """Greedy continuation of each prompt, batched with left padding (the positions come from the attention
    mask, so a batched prompt decodes exactly as it would alone). Per prompt: the new token ids up to (not
    including) the first stop token (EOS unless ``stop_ids``; a chat model's end of turn) and whether the token
    limit cut it."""
    from transformers import GenerationConfig

    pad_id, stops = pad_id_of(tokenizer), stop_ids or [tokenizer.eos_token_id]
    settings = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad_id, eos_token_id=stops
    )
    was_training = model.training
    model.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[dict | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = on_device(pad_batch([{"input_ids": prompts[i]} for i in chunk], pad_id, side="left"))
        generated = model.generate(**batch, generation_config=settings)
        for row, index in enumerate(chunk):
            new = generated[row, batch["input_ids"].shape[1] :].tolist()
            end = next((position for position, token in enumerate(new) if token in stops), None)
            outputs[index] = {"token_ids": new if end is None else new[:end], "hit_limit": end is None}
    model.train(was_training)
    return outputs


def generate_answers(
    model, formatter: Formatter, items: list[dict], batch_size: int, max_new_tokens: int
) -> list[dict]:
    """Per item: the decoded greedy generation (special tokens dropped), its token ids (up to EOS) and whether
    the token limit cut it."""
    return generate_grouped(model, [(formatter, items)], batch_size, max_new_tokens)[0]


def generate_grouped(
    model, groups: list[tuple[Formatter, list[dict]]], batch_size: int, max_new_tokens: int
) -> list[list[dict]]:
    """:func:`generate_answers` for several (formatter, items) groups in one length-sorted pass — the prompt
    variants of both val splits share batches, so a small model decodes a few large batches instead of many small
    ones. The formatters share one tokenizer and template (they differ in system prompt only)."""
    if not groups:
        return []
    first = groups[0][0]
    prompts = [
        formatter.prompt_ids(item["text"])[-formatter.max_length :] for formatter, items in groups for item in items
    ]
    outputs = greedy_generate(model, first.tokenizer, prompts, batch_size, max_new_tokens, first.stop_ids)
    decoded = [
        {"generation": first.tokenizer.decode(out["token_ids"], skip_special_tokens=True).strip(), **out}
        for out in outputs
    ]
    grouped, start = [], 0
    for _, items in groups:
        grouped.append(decoded[start : start + len(items)])
        start += len(items)
    return grouped
