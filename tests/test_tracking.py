"""Experiment tracking through the Trainer's own integrations (``report_to``): TensorBoard writes its event files
offline, beside the stage's record; an integration that is not installed is a one-line error before any work."""

from __future__ import annotations

import pytest

from tests.conftest import MICRO, sets


def _scalars(logs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = [path for path in logs.iterdir() if path.is_dir()]
    assert len(runs) == 1
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_logs_every_unlearning_step_beside_the_record(finetuned_privacy, micro_config, tmp_path):
    from knowundo.unlearn import unlearn

    cfg = micro_config("report_to=[tensorboard]", "unlearn.steps=3", "unlearn.save_steps=0")
    record = unlearn(cfg, "privacy", "ga", finetuned_privacy / "adapter", tmp_path / "ga", progress=False)
    scalars = _scalars(tmp_path / "ga" / "logs")
    assert scalars["train/loss"] == pytest.approx([e["loss"] for e in record["loss_history"]])
    assert len(scalars["train/learning_rate"]) == record["steps"] == 3


def test_an_integration_not_installed_is_one_line_and_exit_2(tmp_path, capsys):
    from knowundo.cli import main

    assert main(["run", "--out", str(tmp_path / "run"), "--quiet", *sets(*MICRO, "report_to=[no_such_tracker]")]) == 2
    err = capsys.readouterr().err.strip()
    assert "report_to[0]" in err and "\n" not in err
    assert not (tmp_path / "run").exists()
