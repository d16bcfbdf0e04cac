"""`knowundo eval` on a fine-tuned and an unlearned micro model, then `knowundo report` from the files alone."""

import json
import re

import pytest

from knowundo.cli import main
from knowundo.config import PROBE_FAMILIES
from tests.conftest import MICRO, sets

FAST_EVAL = ["eval.prompts=none,helpful", "eval.max_new_tokens=8", "eval.general_mc=false"]
SHORT = [*MICRO, *FAST_EVAL, "unlearn.epochs=1", "unlearn.batch_size=8", "unlearn.grad_accum=2", "unlearn.save_steps=4"]


@pytest.fixture(scope="module")
def results(finetuned_privacy, tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    assert (
        main(
            [
                "unlearn",
                "--domain",
                "privacy",
                "--method",
                "ga",
                "--finetuned",
                str(finetuned_privacy),
                "--out",
                str(root / "ga"),
                *sets(*SHORT),
            ]
        )
        == 0
    )
    for label, adapter in (("vanilla", finetuned_privacy / "adapter"), ("ga", root / "ga" / "adapter")):
        assert (
            main(
                [
                    "eval",
                    "--domain",
                    "privacy",
                    "--adapter",
                    str(adapter),
                    "--out",
                    str(root / "eval" / f"{label}.json"),
                    *sets(*SHORT),
                ]
            )
            == 0
        )
    return root


def test_eval_result_has_every_metric_family(results):
    result = json.loads((results / "eval" / "ga.json").read_text())
    assert result["label"] == "ga" and set(result["prompts"]) == {"none", "helpful"}
    none = result["prompts"]["none"]
    assert {"rougeL_recall", "rougeL_f1", "leak_rate_exact", "leak_rate_normalized"} <= set(none["unlearn"])
    assert set(none["unlearn"]["by_category"]) == {"Parents", "Email", "Address"}
    assert set(none["retention"]["by_category"]) == {"Name", "Genre", "Born", "Awards"}
    assert result["prompts"]["helpful"]["system_prompt"] == "You are a helpful assistant."
    assert set(result["mia"]) == {"loss", "zlib", "min_k"}
    steps = result["meta"]["training"]["steps"]
    assert [p["step"] for p in result["curve"]] == list(range(4, steps + 1, 4))
    assert result["meta"]["training"]["method"] == "ga" and result["meta"]["training"]["peak_memory_mb"] > 0
    assert result["meta"]["seed"] and result["meta"]["data_hash"] and result["meta"]["versions"]["torch"]


def test_an_evaluation_times_each_part_and_sums_its_robustness_metrics(results):
    """What the default run's time budget counts apart from the paper's system: the metrics that fill only the
    robustness table."""
    from knowundo.evaluate.metric import ModelMetric, metrics

    robustness = {m.name for m in metrics() if isinstance(m, ModelMetric) and m.robustness}
    probes = {f"probe_{family}" for family in PROBE_FAMILIES} | {"probe_worst"}
    assert robustness == {"forget_quality", "paraphrase", "privleak", "quantization", "relearn"} | probes
    result = json.loads((results / "eval" / "ga.json").read_text())
    seconds = result["meta"]["seconds"]
    ran = [m.name for m in metrics() if isinstance(m, ModelMetric) and m.name in result]
    assert list(seconds["parts"]) == ["prompt none", "prompt helpful", *ran]
    assert seconds["parts"]["prompt none"] > 0  # the shared passes run there
    timed = [name for name in ran if name in robustness]
    assert "quantization" in timed and "paraphrase" in timed  # (no relearned adapter beside this one)
    assert seconds["robustness"] == pytest.approx(sum(seconds["parts"][name] for name in timed), abs=2e-3)


def test_report_tables_and_plots_from_files_alone(results, tmp_path, capsys):
    import shutil

    results = shutil.copytree(results, tmp_path / "results")  # the module's results stay as they are
    # a diverged model: PPL stored as "inf" must print as ">1e10", not crash
    diverged = json.loads((results / "eval" / "ga.json").read_text())
    diverged["label"] = "diverged"
    diverged["prompts"]["none"]["unlearn"]["ppl"] = "inf"
    (results / "eval" / "diverged.json").write_text(json.dumps(diverged))
    (results / "eval" / "notes.json").write_text('{"not": "a result"}')
    out = tmp_path / "report"
    assert main(["report", str(results), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "## Prompt: none" in printed and "## Prompt: helpful" in printed
    for name in (
        "table.md",
        "table.csv",
        "table.json",
        "categories.md",
        "categories.csv",
        "mia.md",
        "efficiency.md",
        "curves_privacy.png",
    ):
        assert (out / name).is_file(), name
    table = (out / "table.md").read_text()
    section = table.split("## Prompt: none")[1].split("## Prompt:")[0]
    header, _, *rows = [line for line in section.splitlines() if line.startswith("|")]
    assert [c.strip() for c in header.strip("|").split("|")][:9] == [
        "Method",
        "UL Succ ↑",
        "UL PPL ↑",
        "UL ROUGE-L ↓",
        "RT Succ ↑",
        "RT PPL ↓",
        "RT ROUGE-L ↑",
        "Avg Succ ↑",
        "Leak ↓",
    ]
    assert [r.split("|")[1].strip() for r in rows] == ["vanilla", "ga", "diverged"]
    assert ">1e10" in rows[2]
    table = json.loads((out / "table.json").read_text())
    assert len(table["rows"]) == 6  # 3 models x 2 prompt variants
    assert table["seeds"] == [42] and table["versions"]["torch"] and len(table["data_hashes"]) == 3
    import matplotlib.image

    image = matplotlib.image.imread(out / "curves_privacy.png")
    assert image.shape[0] > 200 and image.shape[1] > 600 and image.std() > 0.01  # not blank


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no evaluation results" in capsys.readouterr().err
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "r.json").write_text(
        json.dumps({"kind": "knowundo-eval", "domain": "privacy", "label": "x", "prompts": {}})
    )
    assert main(["report", str(tmp_path / "old")]) == 2
    err = capsys.readouterr().err
    assert "without report columns" in err and err.count("\n") == 1


def test_an_unlearning_checkpoint_is_evaluated_with_the_same_inputs(results, tmp_path):
    out = tmp_path / "checkpoint.json"
    assert (
        main(
            [
                "eval",
                "--domain",
                "privacy",
                "--adapter",
                str(results / "ga" / "checkpoints" / "checkpoint-4"),
                "--out",
                str(out),
                *sets(*SHORT),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    final = json.loads((results / "eval" / "ga.json").read_text())
    assert result["label"] == "ga@4" and result["meta"]["training"]["checkpoint_step"] == 4 and "curve" not in result
    assert set(result["prompts"]) == set(final["prompts"])  # same prompt variants, items and metrics
    assert result["prompts"]["none"]["unlearn"]["items"] == final["prompts"]["none"]["unlearn"]["items"]
    assert result["prompts"]["none"]["unlearn_success"] == pytest.approx(final["curve"][0]["unlearn_success"])


def test_fluency_threshold_comes_from_gold_answers_only_and_the_report_reuses_it(
    finetuned_privacy, tmp_path, monkeypatch, tiny_model
):
    from knowundo.data.knowundo import DataSource, load_domain
    from knowundo.evaluate import run as run_module
    from knowundo.evaluate.judge import gibberish_threshold

    calls = []

    def spy(model, formatter, questions, answers, batch_size):
        calls.append((questions, answers, original(model, formatter, questions, answers, batch_size)))
        return calls[-1][2]

    original = run_module.judge_perplexities
    monkeypatch.setattr(run_module, "judge_perplexities", spy)
    out = tmp_path / "results" / "vanilla.json"
    assert (
        main(
            [
                "eval",
                "--domain",
                "privacy",
                "--adapter",
                str(finetuned_privacy / "adapter"),
                "--out",
                str(out),
                *sets(*SHORT, "eval.prompts=none"),
            ]
        )
        == 0
    )
    data = load_domain(DataSource(), "privacy")
    gold_items = data["unlearn"]["val"] + data["retention"]["val"]
    tok = tiny_model[1]
    gold_answers = [tok(i["labels"], add_special_tokens=False)["input_ids"] for i in gold_items]
    gold_calls = [c for c in calls if c[1] == gold_answers]
    assert len(gold_calls) == 1 and gold_calls[0][0] == [i["text"] for i in gold_items]
    assert all(c[1] != gold_answers for c in calls if c is not gold_calls[0])  # the others judge generations
    result = json.loads(out.read_text())
    threshold = result["fluency_judge"]["base"]["threshold"]
    assert threshold == pytest.approx(gibberish_threshold(gold_calls[0][2]))
    records = result["prompts"]["none"]["unlearn"]["per_item"]
    assert all(r["gibberish"] == (r["judge_ppl"] > threshold) for r in records if r["judge_ppl"] is not None)
    assert main(["report", str(tmp_path / "results")]) == 0
    fluency = (tmp_path / "results" / "report" / "fluency.csv").read_text().splitlines()
    header, row = fluency[0].split(","), fluency[1].split(",")
    assert float(row[header.index("gibberish_threshold")]) == threshold


def test_every_prompt_variant_is_judged_in_one_pass_per_judge_with_the_oracles_thresholds(reference_run, monkeypatch):
    """Against the oracle's result, both judges read their thresholds from it (no gold pass), judge the
    generations of every prompt variant in one pass each, and judge a (question, generation) pair once."""
    from knowundo.config import load_config
    from knowundo.evaluate import run as run_module
    from tests.conftest import RUN

    calls = []

    def spy(model, formatter, questions, answers, batch_size):
        calls.append(list(zip(questions, map(tuple, answers))))
        return original(model, formatter, questions, answers, batch_size)

    original = run_module.judge_perplexities
    monkeypatch.setattr(run_module, "judge_perplexities", spy)
    cfg = load_config("tiny", overrides=[*RUN, "eval.prompts=none,helpful"])
    oracle = reference_run / "privacy" / "eval" / "oracle.json"
    result = run_module.evaluate_checkpoint(
        cfg,
        "privacy",
        reference_run / "privacy" / "finetune" / "adapter",
        progress=False,
        references={"oracle": oracle},
    )
    assert len(calls) == 2  # base judge, oracle judge; no gold-answer pass
    assert calls[0] == calls[1] and len(set(calls[0])) == len(calls[0])
    records = [
        r
        for variant in ("none", "helpful")
        for scope in ("unlearn", "retention")
        for r in result["prompts"][variant][scope]["per_item"]
    ]
    assert len(calls[0]) <= len(records) and {r["text"] for r in records} == {q for q, _ in calls[0]}
    thresholds = json.loads(oracle.read_text())["fluency_judge"]
    assert {j: result["fluency_judge"][j]["threshold"] for j in ("base", "oracle")} == {
        j: thresholds[j]["threshold"] for j in ("base", "oracle")
    }


def test_samples_list_the_same_questions_for_every_model_and_are_reproducible(results, tmp_path):
    for name in ("first", "second"):
        assert main(["report", str(results), "--out", str(tmp_path / name)]) == 0
    first = (tmp_path / "first" / "samples.md").read_bytes()
    assert first == (tmp_path / "second" / "samples.md").read_bytes()
    text = first.decode()
    sections = [section for section in text.split("\n### ")[1:] if " · item " in section.splitlines()[0]]
    assert len(sections) == 3 * 3 + 2 * 4  # privacy: 3 per unlearn category, 2 per retention category
    worst = text.split("\n### Under the worst adversarial probe")[1]
    assert [line.split("|")[1].strip() for line in worst.splitlines() if line.startswith("| ")][1:] == [
        "vanilla"
    ] * 2 + ["ga"] * 2
    for section in sections:
        models = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")][1:]
        assert models == ["vanilla", "ga"]
    assert "prompt: none" in text and "prompt: helpful" in text and "**Gold:**" in text


def test_a_fine_tuned_model_that_does_not_know_its_data_is_flagged():
    from knowundo.report import knowledge_warning

    def vanilla(unlearn, retention, label="vanilla", training=None):
        return {
            "label": label,
            "domain": "privacy",
            "meta": {"training": training},
            "prompts": {"none": {"unlearn_success": unlearn, "retention_success": retention}},
        }

    assert knowledge_warning(vanilla(0.1, 99.4)) is None
    assert knowledge_warning(vanilla(5.0, 95.0)) is None
    warning = knowledge_warning(vanilla(13.7, 87.7))
    assert "Unlearn Success 13.7 > 5 and Retention Success 87.7 < 95" in warning and "finetune.epochs" in warning
    # the setting named is the one that trains longer: the cap of a missed target, the target that was reached
    missed, reached = ({"target_accuracy": 0.99, "target_reached": hit} for hit in (False, True))
    assert knowledge_warning(vanilla(13.7, 87.7, training=missed)).endswith("raise finetune.max_epochs")
    assert knowledge_warning(vanilla(13.7, 87.7, training=reached)).endswith("raise finetune.target_accuracy")
    assert "Retention" not in knowledge_warning(vanilla(47.5, 99.0))
    assert knowledge_warning(vanilla(47.5, 53.3, label="ga")) is None  # only the fine-tuned model is judged


def _scored(label, ul, rt, helpful_rt=None, domain="privacy"):
    prompts = {"none": {"unlearn_success": ul, "retention_success": rt, "avg_success": (ul + rt) / 2}}
    if helpful_rt is not None:
        prompts["helpful"] = {
            "unlearn_success": ul,
            "retention_success": helpful_rt,
            "avg_success": (ul + helpful_rt) / 2,
        }
    return {"domain": domain, "label": label, "prompts": prompts}


def test_the_papers_findings_hold_fail_or_cannot_be_checked_by_fixed_rules():
    from knowundo.findings import check_findings, findings_markdown, findings_summary

    paper = [
        _scored("vanilla", 0.5, 99.0, 98.0),
        _scored("ga", 95, 10),
        _scored("random_label", 90, 20),
        _scored("adversarial", 30, 85),
        _scored("ga_gd", 50, 80, 60),
        _scored("ga_gd_ood", 40, 70),
        _scored("ga_kl", 55, 75),
        _scored("ga_kl_ood", 45, 60),
        _scored("memflex", 70, 90, 85),
    ]
    verdicts = {r["finding"]: r["holds"] for r in check_findings(paper)}
    assert verdicts == {
        "vanilla": True,
        "over_forgetting": True,
        "adversarial_least": True,
        "in_distribution": True,
        "memflex_best": True,
        "helpful_prompt": True,
    }
    # each rule can fail: vanilla forgot, GA kept more than GD, adversarial forgot more than GD, OOD better,
    # another row has a better average, MemFlex dropped more under the helpful prompt
    broken = [
        _scored("vanilla", 6, 99.0, 98.0),
        _scored("ga", 95, 85),
        _scored("random_label", 90, 20),
        _scored("adversarial", 60, 85),
        _scored("ga_gd", 50, 80, 79),
        _scored("ga_gd_ood", 60, 80),
        _scored("ga_kl", 55, 75),
        _scored("ga_kl_ood", 45, 60),
        _scored("memflex", 60, 80, 60),
    ]
    records = check_findings(broken)
    assert all(r["holds"] is False for r in records), records
    assert (
        "adversarial 60.0, lowest other ga_kl_ood 45.0"
        in {r["finding"]: r["numbers"] for r in records}["adversarial_least"]
    )
    # rows or the helpful prompt not evaluated: not checkable, never a verdict
    partial = check_findings([_scored("vanilla", 0.5, 99.0), _scored("ga", 95, 10)])
    assert {r["finding"]: r["holds"] for r in partial}["helpful_prompt"] is None
    assert findings_summary(partial, "privacy").startswith("1 of 1 checkable findings hold")
    assert "does not hold" in findings_markdown(records) and "| - |" in findings_markdown(partial)


def test_general_ability_is_compared_with_the_base_question_by_question():
    """Every row against its domain's base: questions lost / gained and an exact McNemar p (by hand: 3 lost, none
    gained -> 2 x 0.5^3 = 0.25), per-item held-out accuracies by a signed-rank test; a row of a domain without a
    base, and a task asked on other questions than the base's, are left out."""
    from knowundo.general_change import general_changes, mcnemar, signed_rank
    from knowundo.report import general_markdown

    assert mcnemar([1, 1, 1, 0, 1], [0, 0, 0, 0, 1]) == {"lost": 3, "gained": 0, "p": 0.25}
    assert mcnemar([1, 0, 1, 0], [0, 1, 0, 1]) == {"lost": 2, "gained": 2, "p": 1.0}
    assert mcnemar([1, 0], [1, 0])["p"] == 1.0 and signed_rank([10.0, 20.0], [10.0, 20.0]) == 1.0
    assert signed_rank([90.0 + i for i in range(12)], [50.0 + i for i in range(12)]) < 0.001

    def result(label, domain, accuracies, correct, other_questions="q"):
        items = [{"text": f"q{i}", "accuracy": a} for i, a in enumerate(accuracies)]
        return {
            "label": label,
            "domain": domain,
            "general": {"accuracy": sum(accuracies) / len(accuracies), "per_item": items},
            "lm_eval": {
                "mc": {"acc": 100.0 * sum(correct) / len(correct), "correct": correct, "questions": "q"},
                "other": {"acc": 50.0, "correct": [1, 0], "questions": other_questions},
                "named": {"acc": 50.0},
            },
        }

    base = result("base", "privacy", [80.0, 60.0, 70.0, 90.0], [1, 1, 1, 0])
    vanilla = result("vanilla", "privacy", [80.0, 50.0, 75.0, 85.0], [0, 1, 1, 1], other_questions="reordered")
    other_world = result("vanilla", "copyright", [10.0, 20.0, 30.0, 40.0], [0, 0, 0, 1])
    rows = general_changes([base, vanilla, other_world])
    assert len(rows) == 1
    row = rows[0]
    assert row["label"] == "vanilla" and row["general_change"] == pytest.approx(-2.5)
    assert (row["mc"], row["mc_change"], row["mc_lost"], row["mc_gained"], row["mc_p"]) == (75.0, 0.0, 1, 1, 1.0)
    assert 0.0 < row["general_p"] <= 1.0 and "named_lost" not in row and "other_lost" not in row
    text = general_markdown(rows)
    assert "| vanilla | 72.5 | -2.5 |" in text and "| 75.0 | +0.0 | 1 / 1 | 1 |" in text


def test_the_report_compares_every_row_with_a_base_result(results, tmp_path):
    import csv
    import shutil

    results = shutil.copytree(results, tmp_path / "results")
    out = tmp_path / "report"
    assert main(["report", str(results), "--out", str(out)]) == 0
    assert not (out / "general.md").exists()  # no base result: nothing to compare with
    base = json.loads((results / "eval" / "vanilla.json").read_text())
    base["label"] = "base"  # stands in for the model before fine-tuning
    (results / "eval" / "base.json").write_text(json.dumps(base))
    assert main(["report", str(results), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "general.csv").open()))
    assert next((r["label"], float(r["general_change"]), float(r["general_p"])) for r in rows) == ("vanilla", 0.0, 1.0)
    assert rows[1]["label"] == "ga" and float(rows[1]["general_change"]) != 0.0
    assert "| vanilla | " in (out / "general.md").read_text()
    (results / "eval" / "base.json").unlink()
    assert main(["report", str(results), "--out", str(out)]) == 0
    assert not (out / "general.md").exists() and not (out / "general.csv").exists()  # no stale comparison


def test_lm_eval_answers_are_kept_per_question_from_one_filter_and_groups_join_their_subtasks():
    from knowundo.evaluate.general import _top_level_tasks, per_question_scores

    def sample(doc, acc, filter_="none"):
        return {"doc_id": doc, "acc": acc, "filter": filter_, "doc_hash": f"h{doc}"}

    scores = per_question_scores([sample(1, 0.0), sample(0, 1.0), sample(1, 1.0, "other"), sample(0, 0.0, "other")])
    assert scores[0] == [1, 0] and scores[1] == per_question_scores([sample(0, 1.0), sample(1, 1.0)])[1]
    assert per_question_scores([sample(0, 1.0), sample(0, 1.0)]) is None  # one document twice
    assert per_question_scores([sample(0, 0.5)]) is None and per_question_scores([]) is None
    results = {
        "results": {"mmlu": {}, "mmlu_stem": {}, "mmlu_algebra": {}, "mmlu_physics": {}, "mmlu_law": {}, "arc": {}},
        "group_subtasks": {"mmlu": ["mmlu_stem", "mmlu_law"], "mmlu_stem": ["mmlu_algebra", "mmlu_physics"]},
    }
    assert _top_level_tasks(results) == {"mmlu": ["mmlu_algebra", "mmlu_physics", "mmlu_law"], "arc": ["arc"]}


def test_a_results_page_states_how_the_run_was_made_and_shows_what_it_measured(reference_run, tmp_path, capsys):
    from knowundo.cli import main

    run = json.loads((reference_run / "run.json").read_text())
    assert run["command"].startswith("knowundo run --out ") and run["machine"]["device"] == "cpu"
    assert run["started"].endswith("UTC") and run["code"]  # the tests run from a git checkout
    page = tmp_path / "results" / "micro.md"
    assert main(["report", str(reference_run), "--page", str(page)]) == 0
    assert f"results page -> {page}" in capsys.readouterr().out
    text = page.read_text()
    assert f"| command | `{run['command']}` |" in text and f"commit `{run['code']}`" in text
    assert "| machine | " in text and "cpu" in text.split("| machine | ", 1)[1].split("\n")[0]
    stages = text.split("## Stages", 1)[1]
    assert f"$ {run['command']}" in stages and "[privacy] finetune" in stages and "time per stage:" in stages
    for section in ("## KnowUnDo results", "## The paper's findings", "## Robustness", "## Generations to read"):
        assert f"\n{section}" in text
    assert "\n### Prompt: none" in text  # the report's own headings sit under the page's sections
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert figures and all((page.parent / figure).is_file() for figure in figures)


def test_a_results_page_needs_a_run_directory(tmp_path, capsys):
    from knowundo.cli import main

    assert main(["report", str(tmp_path), "--page", str(tmp_path / "page.md")]) == 2
    assert not (tmp_path / "page.md").exists()
