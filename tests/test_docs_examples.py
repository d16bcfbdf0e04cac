"""The Python examples of docs/python-api.md run as written: every ```python block, in order, in one namespace, in
a temporary directory, with the tiny model at test size (the micro settings added to every config it loads)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import MICRO

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"
AT_TEST_SIZE = [
    *MICRO,
    "eval.prompts=[none,direct]",
    "eval.max_new_tokens=8",
    "eval.general_mc=false",
    "localize.copies=1",
]


@pytest.mark.slow  # localization, two unlearning runs and an evaluation
def test_the_python_api_examples_run(micro_base, tmp_path, monkeypatch):
    import knowundo
    from knowundo import config

    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 3
    load = config.load_config
    monkeypatch.setattr(
        config,
        "load_config",
        lambda preset=None, file=None, overrides=(), check=True: load(preset, file, [*overrides, *AT_TEST_SIZE], check),
    )
    monkeypatch.delattr(knowundo, "load_config", raising=False)  # the public name resolves to the patched one
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    assert (tmp_path / "npo-adapter" / "adapter_model.safetensors").is_file()
    assert namespace["result"].record["method"] == "half_ascent"
