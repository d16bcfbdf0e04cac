from pathlib import Path

import pytest

from knowundo.cli import main
from knowundo.config import load_config
from knowundo.errors import KnowUndoError


def test_presets_and_overrides_keep_types():
    cfg = load_config("tiny", overrides=["finetune.learning_rate=1e-4", "finetune.epochs=3", "model.dtype=bfloat16"])
    assert cfg.finetune.learning_rate == 1e-4 and isinstance(cfg.finetune.learning_rate, float)
    assert cfg.model.dtype == "bfloat16"
    # the declared type decides, not the preset's spelling: `epochs: 2` in the preset, a fraction on the command line
    half = load_config("tiny", overrides=["unlearn.epochs=0.5", "finetune.max_epochs=30"])
    assert half.unlearn.epochs == 0.5 and half.finetune.max_epochs == 30.0 and isinstance(half.unlearn.epochs, float)
    llama = load_config("llama2-7b-chat")
    assert (llama.lora.r, llama.lora.alpha, llama.lora.dropout, llama.model.max_length) == (8, 16, 0.1, 256)
    assert llama.lora.target_modules == "all-linear" and not llama.model.trust_remote_code
    assert load_config("qwen1.5-7b-chat").model.name == "Qwen/Qwen1.5-7B-Chat"


def test_lora_targets_are_all_linear_or_module_names():
    for value in ("q_proj,v_proj", "[q_proj, v_proj]"):
        assert load_config("tiny", overrides=[f"lora.target_modules={value}"]).lora.target_modules == [
            "q_proj",
            "v_proj",
        ]
    assert load_config("tiny", overrides=["lora.target_modules=all-linear"]).lora.target_modules == "all-linear"
    for value in ("[]", "3"):
        with pytest.raises(KnowUndoError, match=r"lora.target_modules' expects all-linear or a list of module names"):
            load_config("tiny", overrides=[f"lora.target_modules={value}"])


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(
        KnowUndoError,
        match=r"unknown config key 'finetune.learning_rat'; did you mean "
        r"'finetune.learning_rate'",
    ):
        load_config("tiny", overrides=["finetune.learning_rat=1"])


def test_wrong_type_is_an_error():
    with pytest.raises(KnowUndoError, match="expects int"):
        load_config("tiny", overrides=["finetune.batch_size=2.5"])


@pytest.mark.parametrize(
    "argv,message",
    [
        (["data", "--preset", "tiyn"], "did you mean 'tiny'"),
        (["data", "--set", "nosection.key=1"], "unknown config key 'nosection'"),
        (["data", "--set", "data.source=ftp"], "unknown data source 'ftp'"),
        (["data", "--config", "/nonexistent.yaml"], "config file not found"),
        (["finetune", "--domain", "medical", "--out", "/tmp/x"], "unknown domain 'medical'"),
        (["frobnicate"], "invalid choice"),
        (
            ["finetune", "--domain", "privacy", "--set", "finetune.learning_rate=-1", "--out", "/tmp/knowundo-never"],
            "finetune.learning_rate must be > 0",
        ),
        (
            ["finetune", "--domain", "privacy", "--set", "finetune.epochs=0", "--out", "/tmp/knowundo-never"],
            "finetune.epochs must be > 0",
        ),
        (
            [
                "finetune",
                "--domain",
                "privacy",
                "--set",
                "finetune.target_accuracy=1.5",
                "--out",
                "/tmp/knowundo-never",
            ],
            "finetune.target_accuracy must be in (0, 1] or null",
        ),
        (
            [
                "finetune",
                "--domain",
                "privacy",
                "--set",
                "finetune.target_accuracy=null",
                "--set",
                "finetune.max_epochs=5",
                "--out",
                "/tmp/knowundo-never",
            ],
            "finetune.max_epochs must be null unless finetune.target_accuracy is set",
        ),
        (
            ["finetune", "--domain", "privacy", "--set", "finetune.general_replay=2", "--out", "/tmp/knowundo-never"],
            "finetune.general_replay must be in [0, 1]",
        ),
        (
            [
                "finetune",
                "--domain",
                "privacy",
                "--set",
                "finetune.system_prompt_share=-0.1",
                "--out",
                "/tmp/knowundo-never",
            ],
            "finetune.system_prompt_share must be in [0, 1]",
        ),
        (
            ["finetune", "--domain", "privacy", "--set", "finetune.replay_loss=mse", "--out", "/tmp/knowundo-never"],
            "finetune.replay_loss must be one of nll, kl, got 'mse'",
        ),
        (["run", "--set", "unlearn.min_steps=-1", "--out", "/tmp/knowundo-never"], "unlearn.min_steps must be >= 0"),
        (
            ["run", "--set", "lora.target_modules=qproj", "--out", "/tmp/knowundo-never"],
            "lora.target_modules: ['qproj'] names no module of LlamaForCausalLM "
            "(its linear layers: down_proj, gate_proj",
        ),
        (
            ["run", "--set", "unlearn.per_method={ga: {steps: -2}}", "--out", "/tmp/knowundo-never"],
            "unlearn.per_method.ga.steps must be >= 0",
        ),
    ],
)
def test_cli_errors_are_one_line_with_exit_2(argv, message, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not any(Path("/tmp").glob("knowundo-never*"))  # nothing written, not even a .partial directory
