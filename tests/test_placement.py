"""The placement seam: every stage that runs a model asks :mod:`knowundo.placement` where, and records it."""

import re
from pathlib import Path

import pytest
import torch

from knowundo import placement

SRC = Path(__file__).resolve().parents[1] / "src" / "knowundo"


def test_no_model_pass_takes_its_device_from_the_models_parameters():
    guessed = re.compile(r"parameters\(\)\)\.device|\.device\s+for\s+\w+\s+in\s+\w+\.parameters")
    offenders = [
        f"{path.relative_to(SRC)}:{number}"
        for path in SRC.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if guessed.search(line)
    ]
    assert not offenders, f"device taken from a model's parameters instead of knowundo.placement: {offenders}"


@pytest.fixture
def asked(monkeypatch):
    """Every call of the seam, by the module of the function that asked (through place, on_device, describe)."""
    import inspect

    callers, original = [], placement.device

    def spy():
        frames = [frame.frame.f_globals.get("__name__", "") for frame in inspect.stack()[1:6]]
        callers.append(next((name for name in frames if name != "knowundo.placement"), ""))
        return original()

    monkeypatch.setattr(placement, "device", spy)
    return callers


def test_every_model_pass_asks_the_seam(asked, micro_config, micro_base, finetuned_privacy):
    from knowundo.data.format import encode_items
    from knowundo.data.relabel import RelabelContext, adversarial_labels
    from knowundo.evaluate.generation import generate_answers
    from knowundo.evaluate.teacher_forced import evaluate_items
    from knowundo.localize import average_gradients
    from knowundo.models.load import load_adapter, load_base
    from knowundo.stage import Stage

    cfg = micro_config()
    stage = Stage("eval", cfg, "privacy")
    model, tokenizer = load_base(cfg)
    assert asked == ["knowundo.models.load"]
    assert next(model.parameters()).device == placement.device()
    model = load_adapter(model, finetuned_privacy / "adapter", trainable=True)
    formatter, items = stage.formatter(tokenizer), stage.data["unlearn"]["val"][:4]
    features = encode_items(items, formatter).features
    passes = {
        "knowundo.evaluate.teacher_forced": lambda: evaluate_items(model, formatter, items, 4),
        "knowundo.evaluate.generation": lambda: generate_answers(model, formatter, items, 4, 4),
        "knowundo.localize": lambda: average_gradients(model, features, formatter, 1, 0, 4),
        "knowundo.data.relabel": lambda: adversarial_labels(
            features, RelabelContext(model, formatter, torch.Generator().manual_seed(0), 4)
        ),
    }
    for module, run in passes.items():
        asked.clear()
        run()
        assert module in asked, f"{module} ran a model pass without asking the placement seam"


def test_stage_records_state_the_device(finetuned_privacy):
    import json

    record = json.loads((finetuned_privacy / "finetune.json").read_text())
    assert record["device"] == placement.describe() == "cpu"


def test_the_trainer_runs_where_the_seam_says(tmp_path):
    from knowundo.config import TrainConfig
    from knowundo.models.training import training_arguments

    args = training_arguments(tmp_path, TrainConfig(), seed=0, progress=False)
    assert args.device == placement.device()
