"""A model that already knows its data enters at the unlearning stage (`run.finetune: false`, `--vanilla MODEL`):
a full checkpoint, not a LoRA adapter, is the vanilla row; every method trains a fresh LoRA on it, attacks and
report work, and nothing is fine-tuned."""

import json

import pytest

from knowundo.cli import main
from tests.conftest import MICRO, RUN, sets


@pytest.fixture(scope="module")
def full_checkpoint(micro_config, finetuned_privacy, tmp_path_factory):
    """The micro fine-tune merged into its base and saved whole: a full model that knows the privacy data."""
    from knowundo.models.load import load_adapter, load_base

    model, tokenizer = load_base(micro_config())
    merged = load_adapter(model, finetuned_privacy / "adapter").merge_and_unload()
    out = tmp_path_factory.mktemp("full") / "knows-privacy"
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def _rows(out):
    return {row["method"]: row for row in json.loads((out / "report" / "table.json").read_text())["rows"]}


@pytest.mark.slow
def test_a_full_checkpoint_that_knows_the_data_is_the_vanilla_row_of_a_whole_run(full_checkpoint, tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--vanilla", str(full_checkpoint), "--preset", "tiny", "--domains", "privacy"]
    assert main([*argv, "--methods", "ga,memflex,npo", "--out", str(out), "--quiet", *sets(*RUN)]) == 0
    domain = out / "privacy"
    assert not (domain / "finetune").exists() and not (domain / "oracle").exists()
    assert sorted(p.stem for p in (domain / "eval").glob("*.json")) == ["ga", "memflex", "npo", "vanilla"]
    vanilla = json.loads((domain / "eval" / "vanilla.json").read_text())
    assert vanilla["label"] == "vanilla" and vanilla["meta"]["training"] is None and vanilla["meta"]["adapter"] is None
    rows = _rows(out)
    assert list(rows) == ["vanilla", "ga", "memflex", "npo"]
    assert rows["ga"]["unlearn_success"] > rows["vanilla"]["unlearn_success"]  # unlearning moved the given model
    for label in ("ga", "memflex", "npo"):
        record = json.loads((domain / "unlearn" / label / "unlearn.json").read_text())
        assert record["finetuned_adapter"] is None
        assert (domain / "unlearn" / label / "relearn" / "relearn.json").is_file()  # the relearning attack ran
    region = json.loads((domain / "localize" / "region.json").read_text())
    assert region["selected_units"] > 0  # the fresh LoRA's B matrices carry the gradients
    robustness = (out / "report" / "robustness.md").read_text()
    assert "Forget Q" in robustness  # no oracle: forget quality shows "-"
    assert (out / "report" / "findings.md").is_file()


def test_without_a_fine_tune_an_oracle_cannot_be_asked_for(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), *sets(*MICRO, "run.finetune=false")]) == 2
    assert "run.oracle without run.finetune needs run.oracle_model" in capsys.readouterr().err
    assert not out.exists()


def test_vanilla_and_model_are_one_choice(tmp_path, capsys):
    assert main(["run", "--vanilla", "a", "--model", "b", "--out", str(tmp_path / "run")]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
