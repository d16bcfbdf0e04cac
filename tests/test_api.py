"""The Python API: only public names, a model and ``datasets.Dataset`` objects in memory; the numbers are those of
the CLI's stages on the same model and items."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import MICRO, sets

API = [
    *MICRO,
    "eval.prompts=none",
    "eval.max_new_tokens=8",
    "eval.general_mc=false",
    "eval.curves=false",
    "unlearn.epochs=1",
    "unlearn.batch_size=8",
    "localize.copies=1",
]


def _dataset(items):
    import datasets

    return datasets.Dataset.from_list(items)


@pytest.fixture(scope="module")
def privacy_items(micro_config):
    from knowundo.stage import Stage

    stage = Stage("eval", micro_config(), "privacy")
    return stage.data, stage.holdout


def test_the_public_api_is_all_and_every_name_has_a_docstring():
    import knowundo

    for name in knowundo.__all__:
        if name != "__version__":
            assert getattr(knowundo, name).__doc__, name
    with pytest.raises(AttributeError):
        knowundo.not_a_name  # noqa: B018


@pytest.mark.slow  # three stages twice: the API's and the CLI's
def test_npo_in_a_localized_region_through_the_api_equals_the_cli(
    finetuned_privacy, privacy_items, tmp_path, monkeypatch
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import knowundo
    from knowundo.cli import main
    from knowundo.models.load import resolve_model_path

    data, holdout = privacy_items
    cfg = knowundo.load_config("tiny", overrides=API)
    base = resolve_model_path(cfg)  # where the micro base lies: the test's "your own model"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), finetuned_privacy / "adapter")
    tokenizer = AutoTokenizer.from_pretrained(base)
    task = knowundo.UnlearningData.from_items(
        forget=_dataset(data["unlearn"]["train"]),
        retain=_dataset(data["retention"]["train"]),
        forget_val=_dataset(data["unlearn"]["val"]),
        retain_val=_dataset(data["retention"]["val"]),
        holdout=_dataset(holdout),
        general="fictional",
        domain="privacy",
    )

    workdir = tmp_path / "api"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    region = knowundo.localize_model(model, tokenizer, task, cfg)
    result = knowundo.unlearn_model(model, tokenizer, task, "npo", config=cfg, region=region)
    metrics = knowundo.evaluate_model(result.model, tokenizer, task, cfg, label="npo@memflex")
    assert os.listdir(workdir) == []  # nothing written where it ran
    assert result.record["label"] == "npo@memflex" and result.record["steps"] > 0

    monkeypatch.chdir(tmp_path)
    assert (
        main(["localize", "--domain", "privacy", "--finetuned", str(finetuned_privacy), "--out", "loc", *sets(*API)])
        == 0
    )
    assert (
        main(
            [
                "unlearn",
                "--domain",
                "privacy",
                "--method",
                "npo",
                "--finetuned",
                str(finetuned_privacy),
                "--region",
                "loc/region.json",
                "--out",
                "npo",
                *sets(*API),
            ]
        )
        == 0
    )
    assert main(["eval", "--domain", "privacy", "--adapter", "npo/adapter", "--out", "npo.json", *sets(*API)]) == 0

    saved = json.loads((tmp_path / "loc" / "region.json").read_text())
    assert sorted(u["parameter"] for u in saved["parameters"] if u["selected"]) == sorted(region.selected)
    record = json.loads((tmp_path / "npo" / "unlearn.json").read_text())
    assert [e["loss"] for e in result.record["loss_history"]] == pytest.approx(
        [e["loss"] for e in record["loss_history"]], rel=1e-5
    )
    cli = json.loads((tmp_path / "npo.json").read_text())
    for scope in ("unlearn", "retention"):
        ours, theirs = metrics["prompts"]["none"][scope], cli["prompts"]["none"][scope]
        for key in ("success", "accuracy", "ppl", "rougeL_f1", "gibberish_rate", "refusal_rate"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-5), (scope, key)
    assert metrics["general"]["accuracy"] == pytest.approx(cli["general"]["accuracy"], rel=1e-5)


@pytest.mark.slow  # a micro fine-tune
def test_finetune_model_equals_the_finetune_stage(finetuned_privacy, micro_config, tmp_path, monkeypatch):
    """The fine-tune of a plain model in memory learns exactly what `knowundo finetune` learned (the session's
    micro fine-tune of the same data and settings)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import knowundo
    from knowundo.models.load import resolve_model_path

    cfg = micro_config()
    base = resolve_model_path(cfg)
    monkeypatch.chdir(tmp_path)
    result = knowundo.finetune_model(
        AutoModelForCausalLM.from_pretrained(base),
        AutoTokenizer.from_pretrained(base),
        knowundo.load_benchmark("privacy", cfg),
        cfg,
    )
    assert list(tmp_path.iterdir()) == []
    stage = json.loads((finetuned_privacy / "finetune.json").read_text())
    assert result.record["items"] == stage["items"] and result.record["epochs_run"] == stage["epochs_run"]
    assert result.record["loss_history"] == pytest.approx(stage["loss_history"], rel=1e-5)
    assert result.record["train_accuracy_per_epoch"] == pytest.approx(stage["train_accuracy_per_epoch"], rel=1e-6)


def test_a_custom_method_object_runs_on_a_plain_model(tiny_model, privacy_items, micro_config):
    """A method defined in the caller's code, given as an object, on a model without an adapter: it gets a fresh
    LoRA, trains only that, and the result says so."""
    import torch

    import knowundo

    @knowundo.register
    class HalfAscent(knowundo.Method):
        """Gradient ascent at half strength (a test's own method)."""

        name = "half_ascent_api_test"

        def forget_loss(self, forget, params):
            from knowundo.methods.losses import weighted_nll

            return 0.5 * weighted_nll(forget)

    data, _ = privacy_items
    model, tokenizer = tiny_model
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    task = knowundo.UnlearningData.from_items(
        forget=data["unlearn"]["train"][:8], retain=data["retention"]["train"][:8], general="fictional"
    )
    cfg = knowundo.load_config("tiny", overrides=[*API, "unlearn.steps=2"])
    result = knowundo.unlearn_model(model, tokenizer, task, HalfAscent(), config=cfg)
    try:
        assert result.record["method"] == "half_ascent_api_test" and result.record["steps"] == 2
        moved = [n for n, p in result.model.named_parameters() if "lora_B" in n and p.abs().sum() > 0]
        assert moved  # the fresh adapter trained (its B matrices start at zero)
    finally:
        base = result.model.unload()  # the session's shared base model without the adapter again
    assert all(torch.equal(before[name], param) for name, param in base.named_parameters())


def test_bad_api_input_is_a_one_line_error(tiny_model, micro_config):
    import knowundo

    model, tokenizer = tiny_model
    with pytest.raises(knowundo.KnowUndoError, match="UnlearningData"):
        knowundo.unlearn_model(model, tokenizer, {"forget": []}, "ga")
    with pytest.raises(knowundo.KnowUndoError, match="missing 'labels'"):
        knowundo.UnlearningData.from_items(forget=[{"text": "q"}], retain=[{"text": "q", "labels": "a"}])
    task = knowundo.UnlearningData.from_items(
        forget=[{"text": "q", "labels": "a"}], retain=[{"text": "r", "labels": "b"}], general="fictional"
    )
    wrapped = knowundo.with_trainable_adapter(model, micro_config())
    with pytest.raises(knowundo.KnowUndoError, match="plain model"):
        knowundo.finetune_model(wrapped, tokenizer, task, micro_config())
    model = wrapped.unload()  # the session's shared model, plain again
    with pytest.raises(knowundo.KnowUndoError, match="with_trainable_adapter"):
        knowundo.localize_model(model, tokenizer, task, micro_config())
    with pytest.raises(knowundo.KnowUndoError, match="localized region"):
        knowundo.unlearn_model(model, tokenizer, task, "memflex", config=micro_config())
    with pytest.raises(knowundo.KnowUndoError, match="domain name"):
        knowundo.UnlearningData.from_items(
            forget=[{"text": "q", "labels": "a"}], retain=[{"text": "r", "labels": "b"}], domain="../x"
        )
