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
