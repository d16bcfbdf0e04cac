"""Generation metrics: batched greedy decoding, ROUGE-L against the gold answer, and the privacy leak rate."""

from __future__ import annotations

import re

import torch

from knowundo.data.format import Formatter, pad_batch, pad_id_of


@torch.no_grad()
def greedy_generate(model, tokenizer, prompts: list[list[int]], batch_size: int, max_new_tokens: int) -> list[dict]:
    """Greedy continuation of each prompt, batched with left padding (the positions come from the attention
    mask, so a batched prompt decodes exactly as it would alone). Per prompt: the new token ids up to (not
    including) EOS and whether the token limit cut it."""
    from transformers import GenerationConfig

    pad_id, eos_id = pad_id_of(tokenizer), tokenizer.eos_token_id
    settings = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad_id,
                                eos_token_id=eos_id)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[dict | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = pad_batch([{"input_ids": prompts[i]} for i in chunk], pad_id, side="left")
        generated = model.generate(input_ids=batch["input_ids"].to(device),
                                   attention_mask=batch["attention_mask"].to(device), generation_config=settings)
        for row, index in enumerate(chunk):
            new = generated[row, batch["input_ids"].shape[1]:].tolist()
            ended = eos_id in new
            outputs[index] = {"token_ids": new[:new.index(eos_id)] if ended else new, "hit_limit": not ended}
    model.train(was_training)
    return outputs


def rouge_l(prediction: str, reference: str, scorer=None) -> dict[str, float]:
    """ROUGE-L recall and F1 in percent (rouge-score's tokenizer: lower-cased alphanumeric words)."""
    if scorer is None:
        scorer = rouge_scorer()
    score = scorer.score(reference, prediction)["rougeL"]
    return {"rougeL_recall": 100.0 * score.recall, "rougeL_f1": 100.0 * score.fmeasure}


def rouge_scorer():
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"], use_stemmer=False)


def _normalized(text: str) -> str:
    """Lower case, every run of punctuation and spacing one space, padded so that matches are whole words."""
    return " " + " ".join(re.sub(r"[^0-9a-z@]+", " ", text.lower()).split()) + " "


def protected_values(item: dict) -> list[str]:
    """What an unlearn item must not reveal: its structured ``facts`` that the question does not already
    contain (a name given in the question cannot leak), else the gold answer."""
    facts = [f for f in item.get("facts") or [] if isinstance(f, str) and f.strip()]
    values = [f for f in facts if f.lower() not in item["text"].lower()]
    return values if facts else [item["labels"]]


def leaks(generation: str, values: list[str]) -> dict[str, bool]:
    """Whether the generation contains any protected value: verbatim, and after normalizing case, punctuation
    and spacing (whole words only, so "Ann" does not match inside "Annabel")."""
    exact = any(value in generation for value in values)
    normalized_text = _normalized(generation)
    normalized = any(_normalized(value) in normalized_text for value in values if _normalized(value).strip())
    return {"leak_exact": exact, "leak_normalized": normalized}


def generation_scores(model, formatter: Formatter, items: list[dict], batch_size: int, max_new_tokens: int,
                      leak_check: bool = False) -> list[dict]:
    """Per item: the greedy generation, ROUGE-L against the gold answer and (``leak_check``) leak flags."""
    tokenizer = formatter.tokenizer
    prompts = [formatter.prompt_ids(item["text"])[-formatter.max_length:] for item in items]
    outputs = greedy_generate(model, tokenizer, prompts, batch_size, max_new_tokens)
    scorer = rouge_scorer()
    scores = []
    for item, out in zip(items, outputs):
        text = tokenizer.decode(out["token_ids"], skip_special_tokens=True).strip()
        score = {"generation": text, "hit_limit": out["hit_limit"], **rouge_l(text, item["labels"], scorer)}
        if leak_check:
            values = protected_values(item)
            score.update(leaks(text, values) if values else {"leak_exact": None, "leak_normalized": None})
        scores.append(score)
    return scores
