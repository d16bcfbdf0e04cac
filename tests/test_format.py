import pytest

from knowundo.data.format import IGNORE, Formatter, encode_items, pad_batch
from knowundo.errors import KnowUndoError

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


def test_chat_template_and_system_prompt(tiny_model):
    _, tok = tiny_model
    with pytest.raises(KnowUndoError, match="needs a tokenizer with a chat template"):
        Formatter(tok, "chat")
    tok = tok.__class__.from_pretrained(tok.name_or_path)
    tok.chat_template = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}[assistant] {% endif %}")
    f = Formatter(tok, "chat", 256, system_prompt="Be careful.")
    text = tok.decode(f.prompt_ids(ITEM["text"]))
    assert text == "[system] Be careful.\n[user] Who wrote The Iron Garden?\n[assistant] "
    enc = f.encode(ITEM)
    assert tok.decode([t for t in enc["labels"] if t != IGNORE], skip_special_tokens=True) == ITEM["labels"]
