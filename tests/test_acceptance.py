"""The default tiny model at full size (minutes): it knows the data after fine-tuning (the paper's Vanilla
row, also in generation: ROUGE-L recall >= 90 on both domains), and gradient ascent over-forgets while GA+GD
keeps more retention (the paper's pattern).
Run only the fast suite with: make test PYTEST_ARGS='-m "not slow"'."""

import pytest

from knowundo.config import load_config
from knowundo.evaluate.run import evaluate_checkpoint
from knowundo.finetune import finetune
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
def privacy_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("acceptance")
    finetune(CFG, "privacy", root / "finetune", progress=False)
    adapter = root / "finetune" / "adapter"
    results = {"vanilla": _evaluate("privacy", adapter)}
    for method in ("ga", "ga_gd"):
        unlearn(CFG, "privacy", method, adapter, root / method, progress=False)
        results[method] = _evaluate("privacy", root / method / "adapter")
    return results


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
