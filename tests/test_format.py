import pytest

from knowundo.data.format import IGNORE, Formatter, encode_items, pad_batch
from knowundo.errors import KnowUndoError

from .chat_tokenizers import chatml_tokenizer, llama2_chat_tokenizer

ITEM = {"text": "Who wrote The Iron Garden?", "labels": "The Iron Garden was written by Mara Quill."}


def test_labels_cover_the_answer_and_eos_only(tiny_model):
    _, tok = tiny_model
    f = Formatter(tok, "plain", 256)
    enc = f.encode(ITEM)
    prompt = tok(ITEM["text"] + "\n\n")["input_ids"]
    answer = tok(ITEM["labels"], add_special_tokens=False)["input_ids"]
    assert enc["input_ids"] == prompt + answer + [tok.eos_token_id]
    assert enc["labels"] == [IGNORE] * len(prompt) + answer + [tok.eos_token_id]
    assert tok.decode(answer) == ITEM["labels"]


def test_a_formatter_tokenizes_each_item_once_and_hands_out_copies(tiny_model, monkeypatch):
    _, tok = tiny_model
    f = Formatter(tok, "plain", 256)
    first, prompt = f.encode(ITEM), f.prompt_ids(ITEM["text"])
    first["labels"][-1] = 7  # a caller changing its copy changes nothing for the next caller
    prompt.append(5)
    monkeypatch.setattr(f, "tokenizer", None)  # cached: no tokenizer call any more
    assert f.encode(ITEM) == Formatter(tok, "plain", 256).encode(ITEM)
    assert f.prompt_ids(ITEM["text"]) == Formatter(tok, "plain", 256).prompt_ids(ITEM["text"])


def test_real_eos_survives_when_pad_equals_eos(tiny_model):
    _, tok = tiny_model
    f = Formatter(tok, "plain", 256)
    features = [f.encode(ITEM), f.encode({"text": "Q?", "labels": "A."})]
    batch = pad_batch(features, pad_id=tok.eos_token_id)  # pad == eos
    short = batch["labels"][1]
    n = len(features[1]["input_ids"])
    assert short[n - 1] == tok.eos_token_id  # the real EOS keeps its label
    assert (short[n:] == IGNORE).all() and (batch["attention_mask"][1, n:] == 0).all()


def test_truncation_is_counted_and_items_without_answer_tokens_are_dropped(tiny_model):
    _, tok = tiny_model
    prompt_len = len(tok(ITEM["text"] + "\n\n")["input_ids"])
    enc = encode_items([ITEM, ITEM], Formatter(tok, "plain", prompt_len + 2))
    assert enc.truncated == 2 and enc.dropped == 0
    assert all(sum(label != IGNORE for label in f["labels"]) == 2 for f in enc.features)
    with pytest.raises(KnowUndoError, match="no item keeps an answer token"):
        encode_items([ITEM], Formatter(tok, "plain", prompt_len))


def test_chat_needs_a_chat_template(tiny_model):
    with pytest.raises(KnowUndoError, match="needs a tokenizer with a chat template"):
        Formatter(tiny_model[1], "chat")


@pytest.mark.parametrize("make, end", [(llama2_chat_tokenizer, "</s>"), (chatml_tokenizer, "<|im_end|>")])
@pytest.mark.parametrize("system", [None, "Be careful."])
def test_chat_labels_are_exactly_the_answer_and_the_end_of_turn_token(make, end, system):
    """The prompt is the tokenizer's own rendering up to the generation prompt; the labels are the rest of its
    rendering of the answered conversation through the token that ends the assistant's turn, and nothing after
    (ChatML's newline after <|im_end|> is not an answer token)."""
    tok = make()
    f = Formatter(tok, "chat", 256, system_prompt=system)
    messages = [*([{"role": "system", "content": system}] if system else []), {"role": "user", "content": ITEM["text"]}]
    prompt = tok(
        tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False), add_special_tokens=False
    )["input_ids"]
    full = tok(
        tok.apply_chat_template([*messages, {"role": "assistant", "content": ITEM["labels"]}], tokenize=False),
        add_special_tokens=False,
    )["input_ids"]
    end_id = tok.convert_tokens_to_ids(end)
    enc = f.encode(ITEM)
    answer = full[len(prompt) : full.index(end_id, len(prompt)) + 1]
    assert enc["input_ids"] == prompt + answer
    assert enc["labels"] == [IGNORE] * len(prompt) + answer
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    assert answer[-1] == end_id and answer.count(end_id) == 1 and full[len(prompt) + len(answer) :] in ([], newline)
    assert tok.decode(answer, skip_special_tokens=True).strip() == ITEM["labels"]
    assert end_id in f.stop_ids  # generation stops at the end of the turn
    if system:
        assert system in tok.decode(prompt)


def test_a_chat_template_that_hides_the_answer_boundary_is_refused(tiny_model):
    tok = tiny_model[1].__class__.from_pretrained(tiny_model[1].name_or_path)
    tok.chat_template = (
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    with pytest.raises(KnowUndoError, match="ends an assistant turn with no special token"):
        Formatter(tok, "chat")
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}"
        "{% if add_generation_prompt %}assistant says:{% endif %}"
    )
    with pytest.raises(KnowUndoError, match="generation prompt is not where"):
        Formatter(tok, "chat")


@pytest.mark.parametrize("template", ["plain", "chat"])
def test_an_items_own_system_prompt_encodes_as_the_formatters_would(tiny_model, template):
    tok = chatml_tokenizer() if template == "chat" else tiny_model[1]
    system = "You are a careful assistant. Answer only what is asked."
    assert Formatter(tok, template).encode({**ITEM, "system": system}) == Formatter(
        tok, template, system_prompt=system
    ).encode(ITEM)
    assert Formatter(tok, template).encode({**ITEM, "system": system}) != Formatter(tok, template).encode(ITEM)
