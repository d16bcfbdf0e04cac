"""The default tiny model at full size (minutes): it knows the data after fine-tuning (the paper's Vanilla
row, also in generation: ROUGE-L recall >= 90 on both domains), and gradient ascent over-forgets while GA+GD
keeps more retention (the paper's pattern). The oracle (Retention Scope only) does not know the Unlearn Scope,
and forget quality and privleak tell the fine-tuned model from it; 8-bit quantization leaves the metrics
within a point.
Run only the fast suite with: make test PYTEST_ARGS='-m "not slow"'."""

import pytest

from knowundo.attacks.relearn import relearn
from knowundo.config import load_config
from knowundo.evaluate.run import evaluate_checkpoint
from knowundo.finetune import finetune, target_missed
from knowundo.unlearn import unlearn

pytestmark = pytest.mark.slow


CFG = load_config("tiny", overrides=["eval.prompts=none", "eval.general_mc=false"])


@pytest.fixture(scope="module", autouse=True)
def tiny_base():
    from knowundo.models.load import prepare_base

    prepare_base(CFG, progress=False)


def _evaluate(domain, adapter):
    return evaluate_checkpoint(CFG, domain, adapter)["prompts"]["none"]


@pytest.fixture(scope="module")
def privacy_results(tmp_path_factory):
    """Whole result files: oracle, vanilla (against the oracle), ga (relearned) and ga_gd (against both)."""
    root = tmp_path_factory.mktemp("acceptance")
    finetune(CFG, "privacy", root / "finetune", progress=False)
    finetune(CFG, "privacy", root / "oracle", progress=False, oracle=True)
    adapter = root / "finetune" / "adapter"
    files = {label: root / f"{label}.json" for label in ("oracle", "vanilla", "ga", "ga_gd")}
    results = {"oracle": evaluate_checkpoint(CFG, "privacy", root / "oracle" / "adapter", files["oracle"])}
    results["vanilla"] = evaluate_checkpoint(
        CFG, "privacy", adapter, files["vanilla"], references={"oracle": files["oracle"]}
    )
    for method in ("ga", "ga_gd"):
        unlearn(CFG, "privacy", method, adapter, root / method, progress=False)
        if method == "ga":
            relearn(CFG, "privacy", root / method / "adapter", progress=False)
        results[method] = evaluate_checkpoint(
            CFG,
            "privacy",
            root / method / "adapter",
            files[method],
            references={"oracle": files["oracle"], "vanilla": files["vanilla"]},
        )
    return results


@pytest.fixture(scope="module")
def privacy_runs(privacy_results):
    return {label: result["prompts"]["none"] for label, result in privacy_results.items()}


def test_fine_tuned_tiny_model_knows_the_data(privacy_runs):
    vanilla = privacy_runs["vanilla"]
    assert vanilla["retention_success"] >= 95 and vanilla["unlearn_success"] <= 5
    assert vanilla["unlearn"]["rougeL_recall"] >= 90 and vanilla["retention"]["rougeL_recall"] >= 90
    # the fine-tuned model answers fluently: the judge calls (almost) none of its answers gibberish
    assert vanilla["unlearn"]["gibberish_rate"] <= 5 and vanilla["retention"]["gibberish_rate"] <= 5


def test_fine_tuned_tiny_model_reproduces_copyright_answers(tmp_path):
    finetune(CFG, "copyright", tmp_path / "finetune", progress=False)
    vanilla = _evaluate("copyright", tmp_path / "finetune" / "adapter")
    assert vanilla["unlearn"]["rougeL_recall"] >= 90 and vanilla["retention"]["rougeL_recall"] >= 90
    assert vanilla["unlearn"]["hit_token_limit"] == 0  # max_new_tokens covers the longest answer
    assert vanilla["unlearn"]["gibberish_rate"] <= 5 and vanilla["retention"]["gibberish_rate"] <= 5


def test_gradient_ascent_over_forgets_and_ga_gd_keeps_more(privacy_runs):
    vanilla, ga, ga_gd = privacy_runs["vanilla"], privacy_runs["ga"], privacy_runs["ga_gd"]
    assert ga["unlearn_success"] >= 80
    assert vanilla["retention_success"] - ga["retention_success"] >= 40
    assert ga_gd["retention_success"] > ga["retention_success"]


def test_the_oracle_does_not_know_the_unlearn_scope_and_is_told_apart_from_vanilla(privacy_runs, privacy_results):
    oracle, vanilla = privacy_runs["oracle"], privacy_runs["vanilla"]
    assert oracle["retention_success"] >= 95  # the same recipe learned what it was given
    # and never learned the rest: it knows the unlearn scope no better than the base model, which answers part of
    # it from the templates alone (measured: base 25.9, oracle 24.0, vanilla 0.1)
    base = _evaluate("privacy", None)
    assert oracle["unlearn_success"] >= base["unlearn_success"] - 5
    assert oracle["unlearn_success"] >= vanilla["unlearn_success"] + 15
    # the fine-tuned model still knows the unlearn scope: its truth ratios differ from the oracle's, and its
    # unlearn items look more familiar against the holdout than the oracle's do
    assert privacy_results["vanilla"]["forget_quality"]["p"] < 0.01
    assert privacy_results["vanilla"]["privleak"]["privleak"]["min_k"] > 0


def test_8_bit_quantization_keeps_the_metrics_within_a_point(privacy_runs, privacy_results):
    for label in ("vanilla", "ga"):
        quantized = privacy_results[label]["quantization"]["int8-g128"]
        assert abs(quantized["unlearn_success"] - privacy_runs[label]["unlearn_success"]) <= 1
        assert abs(quantized["retention_success"] - privacy_runs[label]["retention_success"]) <= 1


def test_relearning_brings_forgotten_answers_back(privacy_results):
    relearned = privacy_results["ga"]["relearn"]
    assert relearned["unlearn_success"] < relearned["unlearn_success_before"]
    assert relearned["recovered"] > 0


def test_the_fine_tune_reaches_its_target_and_a_helpful_system_prompt_changes_little(privacy_results):
    """The tiny base saw system prompts in pretraining (none of the evaluation's), so an assistant instruction
    before the question no longer derails the fine-tuned model (before: 0.1 / 99.4 -> 49.1 / 52.3)."""
    import json
    from pathlib import Path

    adapter = Path(privacy_results["vanilla"]["meta"]["adapter"])
    record = json.loads((adapter.parent / "finetune.json").read_text())
    assert record["target_reached"] and record["train_accuracy"] >= 0.99
    assert record["general_replayed"] > 0
    cfg = load_config(
        "tiny",
        overrides=[
            "eval.prompts=none,helpful",
            "eval.generate=false",
            "eval.general_mc=false",
            "attack.quantize=[]",
            "attack.paraphrase=false",
        ],
    )
    prompts = evaluate_checkpoint(cfg, "privacy", adapter)["prompts"]
    for key in ("unlearn_success", "retention_success"):
        assert abs(prompts["helpful"][key] - prompts["none"][key]) <= 5, (key, prompts["helpful"][key])


def test_the_fine_tune_keeps_general_ability_within_5_points_of_the_base(privacy_results):
    """Replay distilled from the base with weight decay (the preset's recipe): the fine-tuned model's held-out
    general token accuracy stays within 5 points of the base's, and it loses no more of the general multiple-choice
    task's questions than chance explains (exact McNemar, p >= 0.05). Before, with the replay trained on gold
    answers: 75.5 / 23.5 against 87.1 / 61.8, which fails both. The MC task has 34 questions, so 5 points are
    under two of them: the same code and seeds lose 0 points on one machine and 11.8 on another (floating-point
    order), which is why the MC side is a test of significance, not a margin."""
    from pathlib import Path

    from knowundo.evaluate.general import general_capability
    from knowundo.evaluate.teacher_forced import evaluate_items
    from knowundo.general_change import mcnemar
    from knowundo.models.load import load_adapter, load_base
    from knowundo.stage import Stage

    stage = Stage("eval", CFG, "privacy")
    heldout = stage.general["heldout"]
    cfg = load_config("tiny", overrides=["eval.general_tasks=[]"])

    def general(model, tokenizer):
        accuracy = evaluate_items(model, stage.formatter(tokenizer), heldout, CFG.eval.batch_size)["accuracy"]
        return accuracy, general_capability(model, tokenizer, heldout, cfg)["knowundo_general_mc"]

    base = general(*load_base(CFG))
    model, tokenizer = load_base(CFG)
    tuned = general(load_adapter(model, Path(privacy_results["vanilla"]["meta"]["adapter"])), tokenizer)
    assert base[0] - tuned[0] <= 5, (base[0], tuned[0])
    assert base[1]["questions"] == tuned[1]["questions"]
    change = mcnemar(base[1]["correct"], tuned[1]["correct"])
    assert change["p"] >= 0.05, (base[1]["acc"], tuned[1]["acc"], change)


def test_a_users_own_privacy_set_with_accents_and_long_answers_is_learned(tmp_path):
    """Other names (accented, hyphenated), other phrasings, two-to-four-sentence answers (some in two paragraphs),
    no category or instance fields: the tiny default's fine-tune reaches its target or says so (issue 15's
    criterion; measured 2026-12-01: 97.7% after 60 epochs since the prompted half is redrawn each epoch with weight
    decay 2.0), and the model knows the data."""
    import json

    from .other_world import write_other_world

    data = write_other_world(tmp_path / "data")
    cfg = load_config(
        "tiny",
        overrides=[
            "data.source=local",
            f"data.path={data}",
            "eval.prompts=none",
            "eval.generate=false",
            "eval.general_mc=false",
            "attack.quantize=[]",
            "attack.paraphrase=false",
        ],
    )
    record = finetune(cfg, "privacy", tmp_path / "finetune", progress=False)
    assert not any(
        "category" in item or "instance" in item
        for item in json.loads((data / "privacy" / "unlearn.json").read_text())["val"]
    )
    assert record["truncated"] == 0 and record["dropped"] == 0
    assert record["target_reached"] or (record["epochs_run"] == cfg.finetune.epochs and target_missed(record))
    vanilla = evaluate_checkpoint(cfg, "privacy", tmp_path / "finetune" / "adapter")["prompts"]["none"]
    assert vanilla["unlearn_success"] <= 5 and vanilla["retention_success"] >= 95
