"""Tokenizers in the chat formats of real chat models, written here from the formats' rules (offline): the tiny
tokenizer with a Llama-2-chat template (``<s>[INST] <<SYS>> ... <</SYS>> question [/INST] answer </s>``) and with
a ChatML template (Qwen: ``<|im_start|>role\\n...<|im_end|>``, a default system turn)."""

LLAMA2_CHAT = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set turns = messages[1:] %}{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
    "{% for message in turns %}"
    "{% if message['role'] == 'user' %}{{ bos_token }}[INST] "
    "{% if loop.first and system %}<<SYS>>\n{{ system }}\n<</SYS>>\n\n{% endif %}"
    "{{ message['content'].strip() }} [/INST]"
    "{% else %} {{ message['content'].strip() }} {{ eos_token }}{% endif %}"
    "{% endfor %}"
)

CHATML = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tiny_tokenizer():
    from knowundo.config import TinyConfig
    from knowundo.models.tiny import train_tokenizer

    return train_tokenizer(TinyConfig())


def llama2_chat_tokenizer():
    tokenizer = _tiny_tokenizer()
    tokenizer.chat_template = LLAMA2_CHAT
    return tokenizer


def chatml_tokenizer():
    """Like Qwen1.5-Chat: <|im_end|> ends a turn and is the EOS token; <|endoftext|> pads."""
    tokenizer = _tiny_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHATML
    return tokenizer
