"""Every causal-LM family users bring goes through the whole benchmark: a small random model of each (written
from its config, offline, sharing the tiny tokenizer) is fine-tuned, localized, unlearned with a method of each
kind (reference outputs on either side, alternative answers, hidden states and a layer region, a MemFlex region),
evaluated and reported; per family the LoRA targets and the localized module names are checked."""

import json

import pytest
import torch
from safetensors.torch import load_file

from knowundo.cli import main
from knowundo.region import layer_of
from tests.conftest import MICRO, sets

pytestmark = pytest.mark.slow

SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 512,
}
FAMILIES = {  # family -> (config class, model class, extra config, LoRA targets all-linear must find)
    "llama": (
        "LlamaConfig",
        "LlamaForCausalLM",
        {"num_key_value_heads": 4},
        {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    ),
    "qwen2": (
        "Qwen2Config",
        "Qwen2ForCausalLM",
        {"num_key_value_heads": 2},
        {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    ),
    "mistral": (
        "MistralConfig",
        "MistralForCausalLM",
        {"num_key_value_heads": 2, "sliding_window": None},
        {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    ),
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        {"num_key_value_heads": 2, "head_dim": 16},
        {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    ),
    "phi3": (
        "Phi3Config",
        "Phi3ForCausalLM",
        {"num_key_value_heads": 4, "original_max_position_embeddings": 512},
        {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"},
    ),
    "gpt_neox": (
        "GPTNeoXConfig",
        "GPTNeoXForCausalLM",
        {},
        {"query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"},
    ),
    "gpt2": (
        "GPT2Config",
        "GPT2LMHeadModel",
        {},  # Conv1D layers
        {"c_attn", "c_proj", "c_fc"},
    ),
}
ROWS = ["ga_kl", "memflex", "npo", "idk_dpo", "rmu"]
RUN = [
    *MICRO,
    "finetune.epochs=1",
    "eval.prompts=none",
    "eval.max_new_tokens=8",
    "eval.general_mc=false",
    "eval.curves=false",
    "unlearn.epochs=1",
    "unlearn.batch_size=8",
    "unlearn.grad_accum=4",
    "unlearn.save_steps=0",
    "localize.copies=1",
    "localize.top_k=4",
]


@pytest.fixture(scope="module")
def tokenizer():
    from knowundo.config import TinyConfig
    from knowundo.models.tiny import train_tokenizer

    return train_tokenizer(TinyConfig())


def _write_model(family: str, tokenizer, target) -> None:
    import transformers

    config_name, model_name, extra, _ = FAMILIES[family]
    shape = dict(SHAPE)
    if family == "gpt2":
        shape = {"n_embd": 64, "n_inner": 128, "n_layer": 2, "n_head": 4, "n_positions": 512}
    config = getattr(transformers, config_name)(
        **shape,
        **extra,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    getattr(transformers, model_name)(config).save_pretrained(target)
    tokenizer.save_pretrained(target)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_runs_the_benchmark_with_the_right_lora_targets(family, tokenizer, tmp_path):
    model_dir, out = tmp_path / family, tmp_path / "run"
    _write_model(family, tokenizer, model_dir)
    # the tiny recipe on each family's random micro model (without --preset a named model gets the neutral one)
    assert (
        main(
            [
                "run",
                "--preset",
                "tiny",
                "--model",
                str(model_dir),
                "--domains",
                "privacy",
                "--methods",
                ",".join(ROWS),
                "--out",
                str(out),
                "--quiet",
                *sets(*RUN),
            ]
        )
        == 0
    )
    expected = FAMILIES[family][3]
    adapter = load_file(out / "privacy" / "finetune" / "adapter" / "adapter_model.safetensors")
    found = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in adapter}
    assert found == expected  # all-linear: every linear layer of the blocks, and never the output head
    targets = json.loads((out / "privacy" / "finetune" / "adapter" / "adapter_config.json").read_text())
    assert {name.rsplit(".", 1)[-1] for name in targets["target_modules"]} == expected
    region = json.loads((out / "privacy" / "localize" / "region.json").read_text())
    selected = [p["parameter"] for p in region["parameters"] if p["selected"]]
    assert len(selected) == 4 and len(region["parameters"]) == len(adapter)  # every LoRA matrix was scored
    for name in selected:
        assert ".lora_" in name and name.split(".lora_")[0].rsplit(".", 1)[-1] in expected
        assert layer_of(name) in (0, 1)
    rmu = json.loads((out / "privacy" / "unlearn" / "rmu" / "unlearn.json").read_text())
    moved = rmu["optimized_parameters"]
    assert rmu["method_args"]["layer"] == 0 and 0 < moved < sum(t.numel() for t in adapter.values())
    rows = json.loads((out / "report" / "table.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["base", "vanilla", "oracle", *ROWS]
    assert all(r["unlearn_rougeL_recall"] is not None and r["retention_success"] is not None for r in rows)
