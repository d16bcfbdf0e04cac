"""`knowundo run` end to end on the micro configuration: cached reruns, refusal of other settings, --force,
and interruption (SIGINT, SIGKILL) followed by a restart that gives the numbers of an uninterrupted run."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from knowundo.cli import main
from tests.conftest import run_command as _command

ROOT = Path(__file__).resolve().parents[1]


def _numbers(out):
    """The report's rows without anything that measures time or memory."""
    return json.loads((out / "report" / "table.json").read_text())["rows"]


def test_run_produces_every_stage_and_a_table(reference_run, capsys):
    out = reference_run
    for path in (
        "run.json",
        "privacy/finetune/finetune.json",
        "privacy/localize/region.json",
        "privacy/unlearn/ga/unlearn.json",
        "privacy/unlearn/memflex/unlearn.json",
        "privacy/oracle/finetune.json",
        "privacy/unlearn/ga/relearn/relearn.json",
        "privacy/eval/vanilla.json",
        "privacy/eval/oracle.json",
        "privacy/eval/base.json",
        "privacy/eval/ga.json",
        "privacy/eval/memflex.json",
        "report/table.md",
        "report/findings.md",
        "report/curves_privacy.png",
    ):
        assert (out / path).is_file(), path
    assert [row["method"] for row in _numbers(out)] == ["base", "vanilla", "oracle", "ga", "memflex"]
    record = json.loads((out / "run.json").read_text())
    assert record["seed"] == 42 and record["data_hashes"]["privacy"] and record["versions"]["transformers"]


def test_a_run_unfreezes_the_garbage_collector_and_its_last_curve_point_is_the_final_model(reference_run):
    import gc

    assert gc.get_freeze_count() == 0  # the library objects were frozen for the stages only
    result = json.loads((reference_run / "privacy" / "eval" / "ga.json").read_text())
    last, final = result["curve"][-1], result["prompts"]["none"]
    assert (
        last["step"] == json.loads((reference_run / "privacy" / "unlearn" / "ga" / "unlearn.json").read_text())["steps"]
    )
    assert last["unlearn_success"] == pytest.approx(final["unlearn_success"], abs=1e-9)
    assert last["retention_success"] == pytest.approx(final["retention_success"], abs=1e-9)


def test_second_run_is_all_cached_with_the_same_table(reference_run, capsys):
    before = _numbers(reference_run)
    assert main(_command(reference_run)) == 0
    printed = capsys.readouterr().out
    stage_lines = [
        line for line in printed.splitlines() if line.startswith("[privacy]") and " paper findings: " not in line
    ]
    assert stage_lines and all(" cached " in line or " warning: " in line for line in stage_lines)
    # the micro fine-tune (2 epochs) misses its target and does not learn the data: the run says each in one line,
    # the report shows the second above the table
    warnings = [line for line in stage_lines if " warning: " in line]
    assert len(warnings) == 2 and all("raise finetune.max_epochs" in warning for warning in warnings)
    assert (
        "> **Warning (privacy):** the fine-tuned model does not know its data"
        in (reference_run / "report" / "table.md").read_text()
    )
    assert "| vanilla |" in printed and "Prompt: none" in printed
    assert _numbers(reference_run) == before


def test_other_settings_in_the_same_directory_are_refused(reference_run, capsys):
    code = main(_command(reference_run, "--set", "unlearn.learning_rate=0.5"))
    err = capsys.readouterr().err
    assert code == 2 and "holds a run of other settings" in err and err.count("\n") == 1


@pytest.mark.slow
def test_force_redoes_a_stage_and_what_follows(reference_run, capsys):
    before = _numbers(reference_run)
    assert main(_command(reference_run, "--force", "unlearn")) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[privacy]")]
    assert any(line.startswith("[privacy] finetune") and " cached " in line for line in lines)
    assert all(" cached " not in line for line in lines if line.startswith("[privacy] unlearn"))
    assert _numbers(reference_run) == before  # same seed, same numbers
    assert main(_command(reference_run, "--force", "nothing")) == 2


def _interrupt_then_resume(out, sig, ready):
    """Start `knowundo run` in a subprocess, send ``sig`` once ``ready()`` holds, then run it again."""
    command = [sys.executable, "-m", "knowundo.cli", *_command(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not ready() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be interrupted"
    process.send_signal(sig)
    _, err = process.communicate(timeout=300)
    assert process.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), err
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    return err


@pytest.mark.slow
def test_sigint_during_fine_tuning_stops_after_a_step_and_resumes_to_the_same_numbers(reference_run, tmp_path):
    out = tmp_path / "run"
    partial = out / "privacy" / "finetune.partial"
    err = _interrupt_then_resume(out, signal.SIGINT, (partial / "checkpoints" / "checkpoint-20").is_dir)
    assert "stopping after this step" in err and "run the same command again to resume" in err
    assert _numbers(out) == _numbers(reference_run)


@pytest.mark.slow
def test_sigkill_during_unlearning_resumes_from_the_checkpoint_to_the_same_numbers(reference_run, tmp_path):
    out = tmp_path / "run"
    checkpoints = out / "privacy" / "unlearn" / "ga.partial" / "checkpoints"
    # once checkpoint-12 is being written, checkpoint-8 is complete; the kill may tear checkpoint-12, which
    # must then be skipped rather than resumed from
    _interrupt_then_resume(out, signal.SIGKILL, (checkpoints / "checkpoint-12").is_dir)
    record = json.loads((out / "privacy" / "unlearn" / "ga" / "unlearn.json").read_text())
    assert record["resumed_from_step"] >= 8
    assert _numbers(out) == _numbers(reference_run)


def test_stage_log_prints_a_line_per_stage_and_the_time_per_kind(monkeypatch):
    from knowundo import pipeline

    clock = [0.0]
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: clock[0])

    def takes(seconds, *result):
        return lambda: (clock.__setitem__(0, clock[0] + seconds), result)[1]

    lines = []
    log = pipeline.StageLog(lines.append)
    log.run("finetune", "privacy", takes(100, "adapter", False))
    log.run("finetune", "privacy", takes(40, "oracle", False))
    log.run("eval", "privacy", takes(6, "vanilla", False))
    log.run("eval", "privacy", takes(0, "ga: cached", True))
    log.run("unlearn", "copyright", takes(5, "ga: done", False))
    assert lines[2] == "[privacy] eval         6.0s  vanilla"
    assert lines[3] == "[privacy] eval      cached  ga: cached"
    assert [line.split()[0] for line in lines] == ["[privacy]"] * 4 + ["[copyright]"]
    assert log.totals() == "time per stage: finetune 140s, eval 6s, unlearn 5s; total 151s"


def test_the_default_run_benchmark_splits_the_stage_lines_into_its_budget(tmp_path):
    """The budget's split lives in the benchmark: the oracle and the attacks are robustness evaluations, as are the
    robustness metrics inside the other evaluations; the rows beyond the paper's eight are counted apart."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("default_run", ROOT / "benchmarks" / "default_run.py")
    default_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(default_run)
    evals = tmp_path / "privacy" / "eval"
    evals.mkdir(parents=True)
    for label, inside in (("vanilla", 2.0), ("ga", 1.5), ("npo", 1.0)):
        (evals / f"{label}.json").write_text(json.dumps({"meta": {"seconds": {"robustness": inside}}}))
    output = "\n".join(
        [
            "[all] model       10.0s  tiny base",
            "[privacy] finetune   100.0s  800 items, train loss 0.1",
            "[privacy] finetune    40.0s  oracle: 400 retention items",
            "[privacy] eval         6.0s  oracle: Unlearn 1.0",
            "[privacy] eval         8.0s  vanilla: Unlearn 1.0",
            "[privacy] unlearn      5.0s  ga: 20 steps",
            "[privacy] attack       3.0s  ga: relearned 4 steps",
            "[privacy] eval         7.0s  ga: Unlearn 90.0",
            "[privacy] unlearn      9.0s  npo: 20 steps",
            "[privacy] eval      cached  npo: Unlearn 90.0",
            "time per stage: model 10s; total 188s",
        ]
    )
    split = default_run.budget_split(output, tmp_path)
    assert split == {"paper": 10 + 100 + 6 + 5 + 5.5, "robustness": 40 + 6 + 2 + 3 + 1.5, "beyond": 9.0}


@pytest.mark.slow
def test_a_moved_run_directory_reports_and_reevaluates_identically(reference_run, tmp_path):
    """Every record links inside the run by relative paths: a copy moved elsewhere reports the same table, and
    re-evaluated there (the oracle's adapter, the second fluency judge, found beside its result) gives the same
    numbers."""
    copy, moved = tmp_path / "copy", tmp_path / "elsewhere" / "run"
    shutil.copytree(reference_run, copy)
    moved.parent.mkdir()
    copy.rename(moved)
    for record in moved.rglob("*.json"):
        fields = json.loads(record.read_text())
        if record.name == "run.json":
            fields.pop("command")  # the command line as it was typed
        text = json.dumps(fields)
        assert not any(str(place) in text for place in (reference_run, copy, moved)), record
    assert main(["report", str(moved)]) == 0
    assert _numbers(moved) == _numbers(reference_run)
    assert main(_command(moved, "--force", "eval")) == 0
    assert _numbers(moved) == _numbers(reference_run)
