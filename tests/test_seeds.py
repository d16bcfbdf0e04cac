"""Rows trained with several seeds (``run.seeds``): the run reuses its own seed's stages and puts the others beside
them, the report shows means with bootstrap intervals and each seed's values, and the paper's findings are decided
by paired tests. The statistics are checked on synthetic results against scipy and against known differences."""

import json
import random
import shutil

import pytest

from knowundo.cli import main
from tests.conftest import run_command, sets


def _result(label: str, seed: int, accuracies: dict[str, list[float]]) -> dict:
    """An evaluation result with only the success metric: per-item token accuracies per scope (no system prompt)."""
    from knowundo.evaluate.metric import metrics, reduce_variant

    success = next(m for m in metrics() if m.name == "success")
    records = {
        scope: [
            {"index": i, "accuracy": a, "mean_logprob": -1.0, "exact_match": a == 100.0, "category": None}
            for i, a in enumerate(values)
        ]
        for scope, values in accuracies.items()
    }
    variant = reduce_variant([success], records)
    for scope in records:
        variant[scope]["per_item"] = records[scope]
    return {
        "kind": "knowundo-eval",
        "domain": "privacy",
        "label": label,
        "prompts": {"none": variant},
        "columns": [c.to_json() for c in success.columns],
        "meta": {"seed": 42, "training": {"seed": seed}},
    }


def _draw(rng: random.Random, mean: float, n: int = 60) -> list[float]:
    return [min(100.0, max(0.0, rng.gauss(mean, 25.0))) for _ in range(n)]


def test_one_seeds_interval_is_the_item_bootstrap_that_scipy_computes():
    import numpy
    from scipy.stats import bootstrap

    from knowundo.evaluate.metric import Columns
    from knowundo.replicates import Bootstrap, group_replicates, row_intervals

    rng = random.Random(0)
    retention = _draw(rng, 70.0)
    result = _result("ga", 42, {"unlearn": _draw(rng, 40.0), "retention": retention})
    rows = group_replicates([result])
    column = next(c for c in Columns.of([result]).all if c.key == "retention_success")
    low, high = row_intervals(Bootstrap(rows, resamples=4000), rows[0], [column], ["none"])["none"][column.key]
    reference = bootstrap((numpy.array(retention),), numpy.mean, n_resamples=4000, method="percentile", random_state=1)
    assert low == pytest.approx(reference.confidence_interval.low, abs=1.5)
    assert high == pytest.approx(reference.confidence_interval.high, abs=1.5)
    assert low < sum(retention) / len(retention) < high


def test_a_paired_test_finds_a_real_difference_and_calls_noise_not_significant():
    from knowundo.replicates import Bootstrap, group_replicates, mean_view, paired_tests

    rng = random.Random(1)
    base = {scope: _draw(rng, 60.0) for scope in ("unlearn", "retention")}
    results = []
    for seed in (42, 1, 2):
        # B is A plus 10 points on every item (a real gain); C is A plus noise of mean zero
        noisy = {s: [min(100.0, max(0.0, v + rng.gauss(0, 3))) for v in values] for s, values in base.items()}
        results.append(_result("a", seed, noisy))
        results.append(_result("b", seed, {s: [min(100.0, v + 10) for v in values] for s, values in noisy.items()}))
        results.append(_result("c", seed, {s: [v + rng.gauss(0, 3) for v in values] for s, values in noisy.items()}))
    rows = group_replicates(results, first_seed=42)
    assert [row.seeds for row in rows] == [[42, 1, 2]] * 3
    avg = {row.label: mean_view(row.results)["prompts"]["none"]["retention_success"] for row in rows}

    def gain(of: str):
        return lambda view: (
            view[of]["prompts"]["none"]["retention_success"] - view["a"]["prompts"]["none"]["retention_success"]
        )

    tests = paired_tests(Bootstrap(rows, resamples=500), rows, {"b": gain("b"), "c": gain("c")})
    assert tests["b"]["verdict"] == "holds" and tests["b"]["p"] < 0.01 and tests["b"]["seeds"] == 3
    assert tests["b"]["margin"] == pytest.approx(avg["b"] - avg["a"])
    assert tests["c"]["verdict"] == "not significant" and tests["c"]["p"] > 0.05
    low, high = tests["c"]["interval"]
    assert low < 0 < high


@pytest.mark.parametrize(
    "setting, message",
    [
        ("run.seeds=[1,1]", "run.seeds lists a seed twice"),
        ("run.seeds=[-1]", "run.seeds must be a list of integers >= 0"),
        ("run.seeds=seven", "run.seeds"),
        ("run.seed_finetune=true --set run.finetune=false --set run.oracle=false", "run.seed_finetune needs"),
        ("run.seed_finetune=true --set run.oracle_model=some/model", "a given oracle is one model"),
    ],
)
def test_bad_seeds_stop_before_any_work(tmp_path, capsys, setting, message):
    code = main(["run", "--out", str(tmp_path / "run"), *sets(*setting.split(" --set "))])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and err.count("\n") == 0
    assert not (tmp_path / "run").exists()


def test_more_seeds_reuse_the_runs_own_and_report_means_intervals_and_tested_findings(reference_run, tmp_path):
    """A one-seed run given two seeds: its own seed's stages are reused as they are, the new seed's rows are trained
    beside them (the fine-tune shared) and evaluated alike; the report's values are the means of the two, with
    intervals, each seed's values in seeds.csv, where the first seed's equal the one-seed run's."""
    out = tmp_path / "run"
    shutil.copytree(reference_run, out)
    one_seed = json.loads((out / "report" / "table.json").read_text())["rows"]
    assert main(run_command(out, *sets("run.seeds=[42,7]"))) == 0
    home, other = out / "privacy", out / "privacy" / "seeds" / "7"
    for label in ("ga", "memflex"):
        assert json.loads((home / "unlearn" / label / "unlearn.json").read_text())["seed"] == 42
        record = json.loads((other / "unlearn" / label / "unlearn.json").read_text())
        assert record["seed"] == 7
        evaluated = json.loads((other / "eval" / f"{label}.json").read_text())
        assert evaluated["meta"]["training"]["seed"] == 7 and evaluated["meta"]["seed"] == 42  # one instrument
        vanilla = (other / "eval" / evaluated["meta"]["references"]["vanilla"]).resolve()
        assert vanilla == (home / "eval" / "vanilla.json").resolve()  # compared with the shared fine-tune
    assert not (other / "finetune").exists() and (other / "localize" / "region.json").is_file()
    log = (out / "stages.log").read_text().split("\n$ ")[-1]
    assert "[privacy] unlearn   cached  ga" in log and "[privacy/seeds/7] unlearn " in log

    report = out / "report"
    rows = {row["method"]: row for row in json.loads((report / "table.json").read_text())["rows"]}
    seeds = {}
    for line in (report / "seeds.csv").read_text().splitlines()[1:]:
        seed, _, _, method, unlearn_success, *_ = line.split(",")
        seeds[method, int(seed)] = float(unlearn_success)
    first = {row["method"]: row["unlearn_success"] for row in one_seed}
    for method in ("base", "vanilla", "oracle", "ga", "memflex"):
        assert seeds[method, 42] == pytest.approx(first[method], abs=1e-9)  # seed 42 as the one-seed run gave it
    for method in ("ga", "memflex"):
        row = rows[method]
        assert row["seeds"] == 2
        assert row["unlearn_success"] == pytest.approx((seeds[method, 42] + seeds[method, 7]) / 2)
        assert row["unlearn_success_low"] <= row["unlearn_success"] <= row["unlearn_success_high"]
    assert rows["vanilla"]["seeds"] == 1 and rows["vanilla"]["unlearn_success_low"] is None
    assert " ±" in (report / "table.md").read_text() and (report / "scopes_privacy.png").stat().st_size > 0
    assert json.loads((report / "table.json").read_text())["seeds"] == [7, 42]
    findings = json.loads((report / "findings.json").read_text())["findings"]
    vanilla = next(f for f in findings if f["finding"] == "vanilla")
    assert vanilla["test"]["verdict"] in ("holds", "does not hold", "not significant") and 0 < vanilla["test"]["p"] <= 1
    assert "p " in (report / "findings.md").read_text()

    # a later invocation with one seed reports that seed alone (the other seed's results stay on disk)
    assert main(run_command(out)) == 0
    alone = {row["method"]: row for row in json.loads((report / "table.json").read_text())["rows"]}
    assert alone["ga"]["unlearn_success"] == pytest.approx(first["ga"], abs=1e-9) and "seeds" not in alone["ga"]
    assert not (report / "seeds.csv").exists() and (other / "eval" / "ga.json").is_file()

    # every stage is cached the second time
    assert main(run_command(out, *sets("run.seeds=[42,7]"))) == 0
    again = (out / "stages.log").read_text().split("\n$ ")[-1].splitlines()
    stages = [line for line in again if line.split()[1:2] in (["finetune"], ["localize"], ["unlearn"], ["eval"])]
    assert len(stages) == 15 and all(line.split()[2] == "cached" for line in stages), again


@pytest.mark.slow
def test_seed_finetune_repeats_the_fine_tune_and_compares_each_seed_with_its_own(micro_base, tmp_path):
    out = tmp_path / "run"
    assert main(run_command(out, "--methods", "ga", *sets("run.seeds=[42,7]", "run.seed_finetune=true"))) == 0
    other = out / "privacy" / "seeds" / "7"
    assert json.loads((other / "finetune" / "finetune.json").read_text())["seed"] == 7
    assert json.loads((other / "oracle" / "finetune.json").read_text())["seed"] == 7
    evaluated = json.loads((other / "eval" / "ga.json").read_text())
    vanilla = (other / "eval" / evaluated["meta"]["references"]["vanilla"]).resolve()
    assert vanilla == (other / "eval" / "vanilla.json").resolve()  # compared with its own fine-tune
    assert not (other / "eval" / "base.json").exists() and (out / "privacy" / "eval" / "base.json").is_file()
    rows = {row["method"]: row for row in json.loads((out / "report" / "table.json").read_text())["rows"]}
    assert rows["vanilla"]["seeds"] == 2 and rows["oracle"]["seeds"] == 2 and rows["base"]["seeds"] == 1
