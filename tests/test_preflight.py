"""`knowundo check`: a passing plan for the tiny preset and for a 7B preset read from a directory with only its
config and tokenizer, one line per problem for each failure mode, and `knowundo run` refusing to start on them."""

import pytest

from knowundo.cli import main
from knowundo.config import load_config
from knowundo.layout import RunLabel
from knowundo.preflight import peak_bytes, preflight
from tests.conftest import MICRO, sets


@pytest.fixture(scope="module")
def config_only_7b(tmp_path_factory):
    """A Llama-2-7B directory as a user may have it before downloading weights: config.json and a tokenizer (in
    the Llama-2-chat format)."""
    from transformers import LlamaConfig

    from .chat_tokenizers import llama2_chat_tokenizer

    target = tmp_path_factory.mktemp("llama-2-7b")
    LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
        max_position_embeddings=4096,
    ).save_pretrained(target)
    llama2_chat_tokenizer().save_pretrained(target)
    assert not list(target.glob("*.safetensors"))
    return target


def test_tiny_preset_passes_with_a_plan(micro_base, capsys):
    assert main(["check", *sets(*MICRO)]) == 0
    out = capsys.readouterr().out
    assert "LoRA r 32" in out and "estimated peak memory" in out and "mask exact" in out and "check passed" in out
    assert "data privacy: bundled" in out and "data copyright: bundled" in out


def test_a_7b_preset_is_planned_from_its_config_and_tokenizer_alone(config_only_7b, capsys):
    assert (
        main(["check", "--preset", "llama2-7b-chat", "--model", str(config_only_7b), "--set", "data.source=bundled"])
        == 0
    )
    out = capsys.readouterr().out
    assert "6,738.4M parameters" in out and "19.99M trainable" in out  # Llama-2-7B, LoRA r 8 on all linear layers
    ga = next(line for line in out.splitlines() if line.strip().startswith("ga "))
    plain, checkpointed = (float(v) for v in ga.split()[1::2])
    assert 12.5 < checkpointed < plain < 20  # bf16 weights alone are 12.55 GiB


def test_trained_embedding_rows_are_counted_with_an_untied_head(config_only_7b, capsys):
    assert (
        main(
            [
                "check",
                "--preset",
                "llama2-7b-chat",
                "--model",
                str(config_only_7b),
                "--set",
                "data.source=bundled",
                "--set",
                "lora.train_embeddings=true",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    # 19.99M LoRA + 2 x 32,000 x 4,096 rows (Llama-2's head is not tied to its embeddings)
    assert "LoRA r 8 + embedding rows: 282.13M trainable" in out


def test_every_problem_is_one_line_and_exit_2(config_only_7b, tmp_path, capsys):
    code = main(
        [
            "check",
            "--preset",
            "llama2-7b-chat",
            "--model",
            str(config_only_7b),
            "--set",
            "eval.general_tasks=[no_such_task_xyz]",
            "--set",
            "unlearn.learning_rate=-1",
        ]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert code == 2 and all(line.startswith("knowundo: error: ") for line in err)
    assert any("unlearn.learning_rate must be > 0" in line for line in err)
    assert any("unknown lm-eval task 'no_such_task_xyz'" in line for line in err)
    assert next(line for line in err if "could not load zjunlp/KnowUnDo" in line).startswith(  # not mirrored here
        "knowundo: error: data privacy"
    )
    assert len(err) == 4  # settings, the task, and the unmirrored dataset of each domain
    code = main(["check", "--set", f"model.name={tmp_path / 'models' / 'none'}"])
    assert code == 2 and "model: cannot load model" in capsys.readouterr().err


def test_a_missing_chat_template_and_a_run_that_would_not_fit_are_problems(micro_base):
    report = preflight(load_config("tiny", overrides=[*MICRO, "model.template=chat"]))
    assert any(p.startswith("template chat:") and "chat template" in p for p in report.problems)
    cfg = load_config("tiny", overrides=MICRO)
    report = preflight(cfg, memory=10 * 2**20)  # 10 MB of accelerator memory
    assert any(p.startswith("finetune: estimated peak") and "gradient_checkpointing" in p for p in report.problems)


def test_memory_estimate_follows_the_formula(config_only_7b):
    """Weights N·e + LoRA n·16; checkpointing cuts activations; a reference adds the adapter copy and logits; two
    answers per forget question double the forget side."""
    from transformers import AutoConfig

    from knowundo.preflight import Shape, activation_bytes, parameter_counts

    cfg = load_config("llama2-7b-chat", overrides=[f"model.name={config_only_7b}"])
    model_config = AutoConfig.from_pretrained(config_only_7b)
    total, lora = parameter_counts(cfg, model_config)
    shape = Shape.of(model_config)
    side = activation_bytes(shape, 1, 256, 2, checkpointing=False)
    assert side == pytest.approx(32 * 256 * 4096 * (34 + 5 * 32 * 256 / 4096) + 256 * 32000 * 10)
    assert peak_bytes(RunLabel("ga"), cfg, total, lora, shape, False) == pytest.approx(total * 2 + lora * 16 + side)
    assert peak_bytes(RunLabel("ga_kl"), cfg, total, lora, shape, False) == pytest.approx(
        total * 2 + lora * 16 + side + lora * 4 + 256 * 32000 * 2
    )
    assert peak_bytes(RunLabel("idk_dpo"), cfg, total, lora, shape, False) == pytest.approx(
        total * 2 + lora * 16 + 2 * side + lora * 4 + 256 * 32000 * 2
    )


def test_run_refuses_to_start_on_a_preflight_problem(tmp_path, capsys, micro_base):
    code = main(["run", "--out", str(tmp_path / "run"), *sets(*MICRO, "eval.general_tasks=[no_such_task_xyz]")])
    err = capsys.readouterr().err
    assert code == 2 and "preflight check found 1 problem" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_preflight_plans_each_row_with_its_own_settings(capsys, micro_base):
    assert main(["check", *sets(*MICRO, "run.methods=[ga,npo@memflex]")]) == 0
    lines = capsys.readouterr().out.splitlines()
    planned = [line.split()[0] for line in lines if line.startswith("  ")]
    assert planned == ["finetune", "ga", "npo@memflex"]  # each row with its own settings
