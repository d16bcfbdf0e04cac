"""Unlearning every weight (`unlearn.full_parameters`) and an oracle trained elsewhere (`run.oracle_model`): a
region of LoRA matrices trains whole modules, a full checkpoint is evaluated, swapped, attacked and judged like an
adapter, and a model that already knows its data runs the whole benchmark with a given oracle."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from knowundo.cli import main
from tests.conftest import MICRO, RUN, sets


@pytest.fixture(scope="module")
def plain_model(micro_config, micro_base):
    """A private copy of the micro tiny base (these tests train it in place)."""
    from knowundo.models.load import load_base

    return load_base(micro_config())


def _lora_names(model, cfg) -> list[str]:
    from knowundo.models.load import attach_lora
    from knowundo.region import lora_parameters

    return list(lora_parameters(attach_lora(copy.deepcopy(model), cfg)))


def test_a_region_of_lora_matrices_trains_the_whole_modules_it_selects(plain_model, micro_config):
    from knowundo.errors import KnowUndoError
    from knowundo.region import whole_module_masks

    model, _ = plain_model
    names = _lora_names(model, micro_config())
    chosen = next(n for n in names if ".layers.1." in n and "lora_B" in n)
    masks = {name: torch.tensor([name == chosen]) for name in names}
    whole = whole_module_masks(masks, model)
    assert set(whole) == {name for name, _ in model.named_parameters()}
    module = chosen.removeprefix("base_model.model.").split(".lora_B.")[0]
    assert sorted(n for n, m in whole.items() if m.all()) == sorted(
        n for n, _ in model.named_parameters() if n.rsplit(".", 1)[0] == module
    )
    rows = {chosen: torch.tensor([True, False, True])}
    with pytest.raises(KnowUndoError, match="localize by module"):
        whole_module_masks(rows, model)
    with pytest.raises(KnowUndoError, match="not a LoRA matrix"):
        whole_module_masks({"model.embed_tokens.weight": torch.tensor([True])}, model)


def test_a_full_checkpoint_swapped_in_leaves_the_model_as_it_was(plain_model, tmp_path):
    from knowundo.models.load import is_full_checkpoint, swapped_checkpoint

    model, _ = plain_model
    other = copy.deepcopy(model)
    with torch.no_grad():
        for param in other.parameters():
            param.add_(0.5)
    other.save_pretrained(tmp_path / "other")
    assert is_full_checkpoint(tmp_path / "other")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with swapped_checkpoint(model, tmp_path / "other") as swapped:
        assert swapped is model
        assert all(torch.allclose(p, before[n] + 0.5) for n, p in model.named_parameters())
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_npo_on_every_weight_inside_a_region_through_the_api(plain_model, micro_config):
    """NPO reads a reference model: with every weight trained it is a frozen copy of the model. Only the region's
    modules move; the model returned is the plain model."""
    import knowundo
    from knowundo.stage import Stage

    model, tokenizer = plain_model
    cfg = micro_config("unlearn.full_parameters=true", "unlearn.steps=2", "unlearn.batch_size=8")
    data = Stage("eval", cfg, "privacy").data
    task = knowundo.UnlearningData.from_items(
        forget=data["unlearn"]["train"][:8], retain=data["retention"]["train"][:8], general="fictional"
    )
    names = _lora_names(model, cfg)
    chosen = {n for n in names if ".layers.1.mlp." in n}
    region = knowundo.Region({name: torch.tensor([name in chosen]) for name in names})
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    result = knowundo.unlearn_model(model, tokenizer, task, "npo", config=cfg, region=region)
    assert result.model is model and not hasattr(model, "peft_config")
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    modules = {n.removeprefix("base_model.model.").split(".lora_")[0] for n in chosen}
    assert moved and {n.rsplit(".", 1)[0] for n in moved} <= modules
    record = result.record
    assert record["full_parameters"] and record["steps"] == 2
    assert record["trainable_parameters"] == sum(
        p.numel() for n, p in model.named_parameters() if n.rsplit(".", 1)[0] in modules
    )


def test_bad_oracle_and_full_parameter_settings_stop_before_any_work(micro_base, tmp_path, capsys):
    out = tmp_path / "run"
    cases = [
        (["run.finetune=false"], "run.oracle without run.finetune needs run.oracle_model"),
        (["run.oracle=false", "run.oracle_model=somewhere"], "run.oracle_model is set but run.oracle=false"),
        (["run.oracle_model=tiny"], "built-in base model, not an oracle"),
        (["unlearn.full_parameters=true", "localize.granularity=row"], "localize.granularity=module"),
    ]
    for overrides, message in cases:
        assert main(["run", "--out", str(out), *sets(*MICRO, *overrides)]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()
    assert main(["eval", "--domain", "privacy", "--adapter", "a", "--oracle-model", "b"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_an_oracle_model_with_another_tokenizer_is_refused(smollm2_dir, micro_base, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--oracle-model", str(smollm2_dir), "--out", str(out), *sets(*MICRO)]) == 2
    assert "has another tokenizer than the model" in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def smollm2_dir():
    from knowundo.models.smollm2 import ensure_smollm2, smollm2_path

    ensure_smollm2()
    return smollm2_path()


def _merged(micro_config, adapter, out):
    from knowundo.models.load import load_adapter, load_base

    model, tokenizer = load_base(micro_config())
    load_adapter(model, adapter).merge_and_unload().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.mark.slow
def test_a_given_model_unlearned_whole_against_a_given_oracle(micro_config, finetuned_privacy, tmp_path):
    """`--vanilla` a full checkpoint that knows the data, `--oracle-model` a full checkpoint fine-tuned on the
    Retention Scope alone, every weight unlearned: the oracle row is the given model, forget quality and privleak
    compare against it, and each unlearned row is a whole model that is evaluated, attacked and traced."""
    from knowundo.finetune import finetune
    from knowundo.models.load import is_full_checkpoint

    oracle_run = tmp_path / "oracle-ft"
    finetune(micro_config(), "privacy", oracle_run, progress=False, oracle=True)
    vanilla = _merged(micro_config, finetuned_privacy / "adapter", tmp_path / "knows-privacy")
    oracle = _merged(micro_config, oracle_run / "adapter", tmp_path / "never-saw-it")
    out = tmp_path / "run"
    argv = ["run", "--vanilla", str(vanilla), "--oracle-model", str(oracle), "--preset", "tiny", "--quiet"]
    extra = sets(*RUN, "unlearn.full_parameters=true")
    assert main([*argv, "--domains", "privacy", "--methods", "ga,npo@memflex", "--out", str(out), *extra]) == 0
    domain = out / "privacy"
    assert not (domain / "finetune").exists() and not (domain / "oracle").exists()
    result = json.loads((domain / "eval" / "oracle.json").read_text())
    assert result["label"] == "oracle"
    assert result["meta"]["training"] == {"stage": "given", "oracle": True, "model": str(oracle.resolve())}
    for label in ("ga", "npo@memflex"):
        run_dir = domain / "unlearn" / label
        record = json.loads((run_dir / "unlearn.json").read_text())
        assert record["full_parameters"]
        assert is_full_checkpoint(run_dir / "adapter")
        assert (run_dir / "relearn" / "adapter" / "adapter_config.json").is_file()  # a fresh LoRA attacked it
        evaluated = json.loads((domain / "eval" / f"{label}.json").read_text())
        assert evaluated["forget_quality"]["p"] is not None  # against the given oracle
        assert evaluated["privleak"]["privleak"] is not None
        assert evaluated["relearn"]["unlearn_success"] is not None
        assert [p["step"] for p in evaluated["curve"]] == [int(c.rsplit("-", 1)[1]) for c in record["checkpoints"]]
        judged = evaluated["prompts"]["none"]["unlearn"]
        assert judged["judge_ppl_median"] is not None and judged["oracle_judge_ppl_median"] is not None
    ga = json.loads((domain / "unlearn" / "ga" / "unlearn.json").read_text())
    memflex = json.loads((domain / "unlearn" / "npo@memflex" / "unlearn.json").read_text())
    assert memflex["trainable_parameters"] < ga["trainable_parameters"]  # the region's modules only
    rows = {row["method"]: row for row in json.loads((out / "report" / "table.json").read_text())["rows"]}
    assert list(rows) == ["vanilla", "oracle", "ga", "npo@memflex"]
    assert rows["ga"]["unlearn_success"] > rows["vanilla"]["unlearn_success"]
