from pathlib import Path

from knowundo.artifacts import file_hash
from knowundo.config import TinyConfig
from knowundo.models.tiny import build_tiny


def test_tiny_base_is_rebuilt_bit_identically_from_the_seed(tmp_path):
    cfg = TinyConfig(pretrain_epochs=0.2, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2)
    first = build_tiny(cfg, tmp_path / "a", progress=False)
    second = build_tiny(cfg, tmp_path / "b", progress=False)
    for name in ("model.safetensors", "tokenizer.json"):
        assert file_hash(Path(first) / name) == file_hash(Path(second) / name)
    assert not list(tmp_path.glob(".*"))  # no temporary directory left behind


def test_a_seeded_share_of_pretraining_is_under_system_prompts_the_evaluation_never_uses():
    from knowundo.config import EvalConfig
    from knowundo.data.system_prompts import SYSTEM_PROMPTS
    from knowundo.models.tiny import _pretraining_texts, pretrain_features, tiny_key, train_tokenizer

    cfg = TinyConfig()
    texts = _pretraining_texts(cfg)
    prompted = [item for item in texts if "system" in item]
    assert 0.4 < len(prompted) / len(texts) < 0.6 and {item["system"] for item in prompted} == set(SYSTEM_PROMPTS)
    evaluation = EvalConfig()
    assert not {evaluation.helpful_prompt, *evaluation.direct_prompt.values()} & set(SYSTEM_PROMPTS)
    assert _pretraining_texts(cfg) == texts and not any(
        "system" in i for i in _pretraining_texts(TinyConfig(system_prompt_share=0.0))
    )
    assert tiny_key(cfg) != tiny_key(TinyConfig(system_prompt_share=0.0))
    # the layout is the plain template's: system prompt, blank line, question, blank line, answer, EOS
    tokenizer = train_tokenizer(cfg)
    index = texts.index(prompted[0])
    ids = pretrain_features(tokenizer, cfg)[index]["input_ids"]
    assert tokenizer.decode(ids) == (
        f"<s>{prompted[0]['system']}\n\n{prompted[0]['text']}\n\n{prompted[0]['labels']}</s>"
    )
