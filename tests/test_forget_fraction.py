"""data.forget_fraction: a deletion request for part of the Unlearn Scope's instances. What unlearning, the
oracle and the tables read under it, that the fine-tune does not depend on it, its refusals, and a micro run's
column for the rest of the Unlearn Scope."""

import dataclasses
import json

import pytest

from knowundo.artifacts import read_json
from knowundo.cli import main
from knowundo.config import Config
from knowundo.data.selection import requested_instances
from knowundo.errors import KnowUndoError
from knowundo.finetune import training_items
from knowundo.stage import Stage

from .conftest import run_command, sets


def with_fraction(cfg: Config, fraction: float) -> Config:
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, forget_fraction=fraction))


def test_a_request_is_a_seeded_share_of_whole_instances():
    items = [{"text": f"q{i}", "labels": "a", "instance": f"person {i % 8}"} for i in range(40)]
    assert requested_instances(items, 1.0, 0) is None
    quarter = requested_instances(items, 0.25, 0)
    assert len(quarter) == 2 and quarter == requested_instances(items, 0.25, 0)
    assert any(requested_instances(items, 0.25, seed) != quarter for seed in range(1, 5))
    assert len(requested_instances(items, 0.01, 0)) == 1  # at least one instance
    assert len(requested_instances(items, 0.99, 0)) == 7  # and the rest never empty
    with pytest.raises(KnowUndoError, match="'instance'"):
        requested_instances([{"text": "q", "labels": "a"}, *items], 0.5, 0)
    with pytest.raises(KnowUndoError, match="two or more instances"):
        requested_instances(items[:1], 0.5, 0)


def test_what_each_stage_reads_under_a_partial_request(micro_config):
    cfg = with_fraction(micro_config(), 0.25)
    stage = Stage("unlearn", cfg, "privacy")
    requested = stage.requested
    every = {item["instance"] for split in stage.data["unlearn"].values() for item in split}
    assert 0 < len(requested) < len(every)
    assert {item["instance"] for item in stage.train("unlearn")} == requested
    assert {item["instance"] for item in stage.val("unlearn")} == requested
    assert {item["instance"] for item in stage.val("unrequested")} == every - requested
    assert len(stage.val("unlearn")) + len(stage.val("unrequested")) == len(stage.data["unlearn"]["val"])
    assert stage.train("retention") == stage.data["retention"]["train"]  # the Retention Scope is untouched
    # the oracle never saw a requested instance's Unlearn Scope item, and learned every other one
    oracle = {item["text"] for item in training_items(Stage("finetune", cfg, "privacy"), oracle=True)}
    unlearn = [item for split in stage.data["unlearn"].values() for item in split]
    assert not any(item["text"] in oracle for item in unlearn if item["instance"] in requested)
    assert all(item["text"] in oracle for item in unlearn if item["instance"] not in requested)
    # without a request nothing changes
    whole = Stage("unlearn", micro_config(), "privacy")
    assert whole.requested is None and whole.val("unrequested") == []
    assert whole.val("unlearn") == whole.data["unlearn"]["val"]


def test_the_request_keys_the_unlearning_but_not_the_fine_tune(micro_config):
    cfg, part = micro_config(), with_fraction(micro_config(), 0.5)
    data = Stage("unlearn", cfg, "privacy").data
    assert Stage("unlearn", part, "privacy").key(data) != Stage("unlearn", cfg, "privacy").key(data)
    assert Stage("unlearn", with_fraction(cfg, 1.0), "privacy").key(data) == Stage("unlearn", cfg, "privacy").key(data)


@pytest.mark.parametrize(
    "setting, message",
    [("data.forget_fraction=0", "data.forget_fraction"), ("data.forget_fraction=1.5", "data.forget_fraction")],
)
def test_bad_fractions_are_one_line_before_any_work(setting, message, tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "run"), *sets(setting)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not (tmp_path / "run").exists()


def test_a_run_under_a_partial_request_reports_the_rest_of_the_unlearn_scope(micro_base, tmp_path):
    out = tmp_path / "run"
    argv = run_command(out, *sets("data.forget_fraction=0.5", "attack.relearn=false", "attack.probes=[]"))
    assert main([*argv, "--methods", "ga"]) == 0
    rows = {row["method"]: row for row in read_json(out / "report" / "table.json")["rows"]}
    assert {"base", "vanilla", "oracle", "ga"} <= set(rows)
    assert all(row["unrequested_accuracy"] is not None for row in rows.values())
    # gradient ascent on the requested half costs the other half too (the same kind of fact): the column shows
    # what a plain UL Succ cannot (the micro model knows its data only in part, so the margin is small)
    assert rows["ga"]["unrequested_accuracy"] < rows["vanilla"]["unrequested_accuracy"]
    unlearned = read_json(out / "privacy" / "unlearn" / "ga" / "unlearn.json")
    stage = Stage("unlearn", with_fraction(Config(), 0.5), "privacy")
    assert unlearned["forget_items"] == len(stage.train("unlearn"))
    assert "UL rest" in (out / "report" / "table.md").read_text()


def test_data_without_instances_is_refused_a_partial_request(tmp_path, capsys):
    from knowundo.data.knowundo import DataSource, load_domain

    from .test_sources import _write_split_files

    splits = _write_split_files(tmp_path / "data", load_domain(DataSource("bundled"), "privacy"))
    settings = [
        "data.source=local",
        f"data.path={tmp_path / 'data'}",
        "run.domains=[medical]",
        "data.fields=tofu",
        f"data.splits={json.dumps(splits)}",
        "data.forget_fraction=0.5",
        "eval.prompts=[none]",
    ]
    assert main(["run", "--out", str(tmp_path / "run"), *sets(*settings)]) == 2
    err = capsys.readouterr().err.strip()  # after the datasets library's progress lines, one error line
    assert err.count("knowundo: error") == 1 and "data.forget_fraction" in err.splitlines()[-1]
    assert "'instance'" in err.splitlines()[-1]
    assert not (tmp_path / "run").exists()
