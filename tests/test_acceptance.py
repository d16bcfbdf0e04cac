"""The default tiny model at full size (minutes): it knows the data after fine-tuning (the paper's Vanilla
row), and gradient ascent over-forgets while GA+GD keeps more retention (the paper's pattern).
Run only the fast suite with: make test PYTEST_ARGS='-m "not slow"'."""

import pytest

from knowundo.config import load_config
from knowundo.evaluate.run import evaluate_checkpoint
from knowundo.finetune import finetune
from knowundo.unlearn import unlearn

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def privacy_runs(tmp_path_factory):
    cfg = load_config("tiny")
    root = tmp_path_factory.mktemp("acceptance")
    finetune(cfg, "privacy", root / "finetune", progress=False)
    adapter = root / "finetune" / "adapter"
    results = {"vanilla": evaluate_checkpoint(cfg, "privacy", adapter)}
    for method in ("ga", "ga_gd"):
        unlearn(cfg, "privacy", method, adapter, root / method, progress=False)
        results[method] = evaluate_checkpoint(cfg, "privacy", root / method / "adapter")
    return results


def test_fine_tuned_tiny_model_knows_the_data(privacy_runs):
    vanilla = privacy_runs["vanilla"]
    assert vanilla["retention_success"] >= 95 and vanilla["unlearn_success"] <= 5


def test_gradient_ascent_over_forgets_and_ga_gd_keeps_more(privacy_runs):
    vanilla, ga, ga_gd = privacy_runs["vanilla"], privacy_runs["ga"], privacy_runs["ga_gd"]
    assert ga["unlearn_success"] >= 80
    assert vanilla["retention_success"] - ga["retention_success"] >= 40
    assert ga_gd["retention_success"] > ga["retention_success"]
