"""Turning question/answer items into token ids with answer-only labels.

``input_ids = prompt(question) + answer + eos``; ``labels`` are -100 on the prompt and on padding, so loss and
every metric see answer tokens only. Masking is by position, never by ``token == pad``: when pad == eos that
would also hide the real end of the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from knowundo.errors import KnowUndoError

IGNORE = -100
TEMPLATES = ("plain", "chat", "auto")


def resolve_template(template: str, tokenizer) -> str:
    """``auto`` is ``chat`` for a tokenizer with a chat template and ``plain`` for one without; the others as
    named."""
    if template not in TEMPLATES:
        raise KnowUndoError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    if template == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "plain"
    return template


@dataclass
class Formatter:
    """How a question becomes a prompt. ``plain`` is ``system + question + separator`` (the reference's
    ``"\\n\\n"``) and the answer ends with EOS; ``chat`` renders the conversation with the tokenizer's own chat
    template (the system prompt as a system turn) and the answer is exactly what the template puts after the
    generation prompt, through the first special token that ends the assistant's turn (``</s>`` for
    Llama-2-chat, ``<|im_end|>`` for ChatML): the tokens a chat model was trained to produce. ``auto`` resolves to
    one of the two (:func:`resolve_template`)."""

    tokenizer: object
    template: str = "plain"
    max_length: int = 256
    separator: str = "\n\n"
    system_prompt: str | None = None

    def __post_init__(self):
        self.template = resolve_template(self.template, self.tokenizer)
        if self.template == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise KnowUndoError("template 'chat' needs a tokenizer with a chat template; use template 'plain'")
        if self.tokenizer.eos_token_id is None:
            raise KnowUndoError("the tokenizer has no EOS token; answers must end with one")
        self._special = set(self.tokenizer.all_special_ids) | {
            index for index, token in getattr(self.tokenizer, "added_tokens_decoder", {}).items() if token.special
        }
        self.stop_ids = [self.tokenizer.eos_token_id]
        # one formatter encodes the same questions many times in an evaluation (every checkpoint of a curve, every
        # quantization scheme): each question and item is tokenized once
        self._prompts: dict[tuple[str | None, str], list[int]] = {}
        self._encoded: dict[tuple[str | None, str, str], dict | None] = {}
        if self.template == "chat":  # also a check that the template renders answers as this module expects
            end = self.answer_ids("Yes.", "Is it?")[-1]
            self.stop_ids = list(dict.fromkeys([end, *self.stop_ids]))

    def _messages(self, question: str, answer: str | None = None, system: str | None = None) -> list[dict]:
        messages = [{"role": "user", "content": question}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
        return messages

    def _rendered_ids(self, messages: list[dict], generation_prompt: bool) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt_ids(self, question: str, system: str | None = None) -> list[int]:
        """The prompt of ``question`` under the formatter's system prompt (or ``system``, an item's own)."""
        system = system or self.system_prompt
        if (system, question) not in self._prompts:
            if self.template == "chat":
                ids = self._rendered_ids(self._messages(question, system=system), generation_prompt=True)
            else:
                prefix = f"{system}{self.separator}" if system else ""
                ids = self.tokenizer(prefix + question + self.separator)["input_ids"]
            self._prompts[system, question] = ids
        return list(self._prompts[system, question])

    def answer_ids(
        self, answer: str, question: str = "?", prompt: list[int] | None = None, system: str | None = None
    ) -> list[int]:
        """The answer's tokens and the token that ends it (EOS; under ``chat``, the end of the assistant's turn
        as the template renders it after ``question``, whose ``prompt`` ids may be given)."""
        if self.template != "chat":
            return self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        system = system or self.system_prompt
        prompt = self.prompt_ids(question, system) if prompt is None else prompt
        rendered = self._rendered_ids(self._messages(question, answer, system), generation_prompt=False)
        if rendered[: len(prompt)] != prompt:
            raise KnowUndoError(
                "the chat template's generation prompt is not where its rendering of an answered "
                "question begins the answer; use template 'plain' or fix the template"
            )
        rest = rendered[len(prompt) :]
        end = next((i for i, token in enumerate(rest) if token in self._special), None)
        if end is None:
            raise KnowUndoError(
                "the chat template ends an assistant turn with no special token; use template "
                "'plain' or fix the template"
            )
        return rest[: end + 1]

    def encode(self, item: dict) -> dict | None:
        """Token ids and answer-only labels for one item (asked under its own ``system`` prompt if it has one, a
        fine-tune item's); ``None`` if no answer token fits in max_length. An item's ``prefill`` opens the answer
        unscored (a prefilling attack puts words in the model's mouth): its tokens are prompt, not label."""
        key = (item.get("system"), item["text"], item["labels"], item.get("prefill"))
        if key not in self._encoded:
            self._encoded[key] = self._encode(item)
        encoded = self._encoded[key]
        return None if encoded is None else {k: list(v) if isinstance(v, list) else v for k, v in encoded.items()}

    def _encode(self, item: dict) -> dict | None:
        prompt = self.prompt_ids(item["text"], item.get("system"))
        prefill = item.get("prefill")
        answer = self.answer_ids(
            f"{prefill} {item['labels']}" if prefill else item["labels"], item["text"], prompt, item.get("system")
        )
        opened = self._prefilled(answer, prefill) if prefill else 0
        ids = (prompt + answer)[: self.max_length]
        if len(ids) <= len(prompt) + opened:
            return None
        labels = [IGNORE] * (len(prompt) + opened) + ids[len(prompt) + opened :]
        return {"input_ids": ids, "labels": labels, "truncated": len(prompt) + len(answer) > self.max_length}

    def _prefilled(self, answer: list[int], prefill: str) -> int:
        """How many of the answer's first tokens the prefill's own tokens make up (where a tokenizer merges the last
        of them with the answer's first word, the merged token is scored)."""
        own = self.tokenizer(prefill, add_special_tokens=False)["input_ids"]
        shared = 0
        while shared < min(len(own), len(answer)) and own[shared] == answer[shared]:
            shared += 1
        return shared


@dataclass
class Encoded:
    """A list of encoded items plus what encoding had to do to them (reported, never silent)."""

    features: list[dict] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)  # index in the input list of each feature
    truncated: int = 0
    dropped: int = 0


def encode_items(items: list[dict], formatter: Formatter) -> Encoded:
    out = Encoded()
    for index, item in enumerate(items):
        enc = formatter.encode(item)
        if enc is None:
            out.dropped += 1
            continue
        out.truncated += enc.pop("truncated")
        out.features.append(enc)
        out.kept.append(index)
    if not out.features:
        raise KnowUndoError(f"no item keeps an answer token within max_length={formatter.max_length}")
    return out


def pad_batch(features: list[dict], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """Pad ``input_ids`` (with ``pad_id``), ``labels`` (with -100) and build ``attention_mask``."""
    width = max(len(f["input_ids"]) for f in features)
    ids, labels, mask = [], [], []
    for f in features:
        gap = width - len(f["input_ids"])

        def place(seq, fill, gap=gap):
            return seq + [fill] * gap if side == "right" else [fill] * gap + seq

        ids.append(place(f["input_ids"], pad_id))
        mask.append(place([1] * len(f["input_ids"]), 0))
        if "labels" in f:
            labels.append(place(f["labels"], IGNORE))
    batch = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
    if labels:
        batch["labels"] = torch.tensor(labels)
    return batch


def pad_id_of(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
