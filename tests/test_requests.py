"""run.requests: deletion requests that arrive one after another. How the instances are dealt into requests, what
each stage reads at request r (and what it keys), the refusals, and a micro run whose rows continue from request to
request, with a region re-localized on the row's own model or reused, and the report's requests page."""

import dataclasses
import shutil

import pytest

from knowundo.artifacts import file_hash, read_json
from knowundo.cli import main
from knowundo.config import Config
from knowundo.data.selection import request_groups
from knowundo.errors import KnowUndoError
from knowundo.stage import Stage, adapter_hash

from .conftest import run_command, sets


def at(cfg: Config, requests: int, request: int, fraction: float = 1.0) -> Config:
    return dataclasses.replace(
        cfg,
        run=dataclasses.replace(cfg.run, requests=requests),
        data=dataclasses.replace(cfg.data, request=request, forget_fraction=fraction),
    )


def instances(items: list[dict]) -> set[str]:
    return {item["instance"] for item in items}


def test_requests_deal_whole_instances_into_seeded_groups():
    items = [{"text": f"q{i}", "labels": "a", "instance": f"person {i % 10}"} for i in range(40)]
    groups = request_groups(items, None, 4, 0)
    assert [len(group) for group in groups] == [3, 3, 2, 2]
    assert set().union(*groups) == instances(items) and sum(map(len, groups)) == 10  # disjoint, all covered
    assert groups == request_groups(items, None, 4, 0)
    assert any(request_groups(items, None, 4, seed) != groups for seed in range(1, 5))
    part = {"person 1", "person 2", "person 3"}
    assert set().union(*request_groups(items, part, 3, 0)) == part  # a partial request (data.forget_fraction)
    with pytest.raises(KnowUndoError, match="at least as many requested instances"):
        request_groups(items, part, 4, 0)
    with pytest.raises(KnowUndoError, match="'instance'"):
        request_groups([{"text": "q", "labels": "a"}, *items], None, 2, 0)


def test_what_each_stage_reads_at_each_request(micro_config):
    cfg = micro_config()
    every = instances(Stage("unlearn", cfg, "privacy").data["unlearn"]["val"])
    groups = request_groups(
        [item for split in Stage("unlearn", cfg, "privacy").data["unlearn"].values() for item in split],
        None,
        3,
        cfg.data.seed,
    )
    for request in (1, 2, 3):
        stage = Stage("unlearn", at(cfg, 3, request), "privacy")
        so_far = set().union(*groups[:request])
        assert instances(stage.train("unlearn")) == groups[request - 1]  # unlearns its own request only
        assert instances(stage.val("unlearn")) == so_far  # reported: everything requested so far
        assert instances(stage.val("unrequested")) == every - so_far  # the rest must stay known
        assert stage.train("retention") == stage.data["retention"]["train"]
    assert Stage("unlearn", at(cfg, 3, 3), "privacy").requested is None  # all requested: no rest column
    # inside a partial request (data.forget_fraction), the requests split the requested instances
    part = Stage("unlearn", at(cfg, 2, 2, fraction=0.5), "privacy")
    whole = Stage("unlearn", at(cfg, 1, 0, fraction=0.5), "privacy").requested
    assert part.requested == whole and instances(part.val("unrequested")) == every - whole
    # keys: request r of k is its own stage; the single request keeps its key whatever run.requests says
    data = Stage("unlearn", cfg, "privacy").data
    keys = {Stage("unlearn", at(cfg, k, r), "privacy").key(data) for k, r in ((3, 1), (3, 2), (2, 1), (1, 0))}
    assert len(keys) == 4
    assert Stage("unlearn", at(cfg, 3, 0), "privacy").key(data) == Stage("unlearn", cfg, "privacy").key(data)


@pytest.mark.parametrize(
    "settings, message",
    [
        (["run.requests=0"], "run.requests must be >= 1"),
        (["data.request=2"], "data.request must be in [0, run.requests=1]"),
        (["run.requests=2", "data.request=1"], "data.request is set by `knowundo run`"),
        (["run.requests=2", "run.request_regions=[reuse, reuse]"], "lists a choice twice"),
        (["run.requests=2", "run.request_regions=[again]"], "run.request_regions must be"),
        (["run.requests=2", "unlearn.full_parameters=true"], "run.requests with unlearn.full_parameters"),
        (["run.requests=500"], "run.requests=500 needs at least as many requested instances"),
    ],
)
def test_bad_request_settings_are_one_line_before_any_work(settings, message, tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "run"), "--domains", "privacy", *sets(*settings)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not (tmp_path / "run").exists()


REQUESTS = ("run.requests=2", "attack.probes=[]", "eval.generate=false")


@pytest.fixture(scope="module")
def requests_run(micro_base, tmp_path_factory):
    """A micro run with two requests (privacy; ga and memflex, memflex re-localized and reused)."""
    out = tmp_path_factory.mktemp("requests") / "run"
    assert main(run_command(out, *sets(*REQUESTS))) == 0
    return out


def test_knowundo_check_shows_the_requests(micro_config, micro_base):
    from knowundo.preflight import preflight

    report = preflight(at(micro_config(), 3, 0))
    assert not report.problems
    assert any(line.startswith("requests privacy: 3 one after another, of ") for line in report.lines)


def test_requests_continue_row_by_row_and_are_reported(requests_run):
    out = requests_run
    home, first, second = out / "privacy", out / "privacy" / "requests" / "1", out / "privacy" / "requests" / "2"
    # the single request's rows are as without run.requests; every request row starts from its model after the
    # request before (the fine-tuned one at the first), which is also its reference model
    # (a row keeping the first request's region is its re-localized twin at the first request: trained once)
    for row, before in (("ga", "ga"), ("memflex", "memflex"), ("memflex+reused", "memflex")):
        assert read_json(first / "unlearn" / before / "unlearn.json")["finetuned_adapter"].endswith("finetune/adapter")
        after_first = adapter_hash(first / "unlearn" / before / "adapter")
        assert (
            read_json(second / "unlearn" / row / "unlearn.json")["key"]
            != read_json(first / "unlearn" / before / "unlearn.json")["key"]
        )
        started = read_json(second / "unlearn" / row / "unlearn.json")["finetuned_adapter"]
        assert (second / "unlearn" / row / started).resolve() == (first / "unlearn" / before / "adapter").resolve()
        assert after_first != adapter_hash(second / "unlearn" / row / "adapter")
    assert not (first / "unlearn" / "memflex+reused").exists() and not (first / "eval" / "memflex+reused.json").exists()
    # the first request's region was localized on the fine-tuned model; the second re-localized on memflex's own
    # model, and the reused row kept the first
    shared = first / "localize" / "vanilla"
    assert read_json(shared / "gradients.json")["adapter_hash"] == adapter_hash(home / "finetune" / "adapter")
    own = second / "localize" / "memflex"
    assert read_json(own / "gradients.json")["adapter_hash"] == adapter_hash(first / "unlearn" / "memflex" / "adapter")
    assert read_json(second / "unlearn" / "memflex" / "unlearn.json")["region_hash"] == file_hash(own / "region.json")
    reused = read_json(second / "unlearn" / "memflex+reused" / "unlearn.json")
    assert reused["region_hash"] == file_hash(shared / "region.json")
    assert not (second / "localize" / "memflex+reused").exists()
    # each request's rows are evaluated on that request's view, against the references evaluated on it
    ga = read_json(second / "eval" / "ga.json")
    assert ga["request"] == {"index": 2, "of": 2}
    assert read_json(first / "eval" / "vanilla.json")["request"] == {"index": 1, "of": 2}
    first_ga = read_json(first / "eval" / "ga.json")
    assert first_ga["unrequested"]["items"] > 0 and "unrequested" not in ga  # all requested after the last
    # the report: the comparison table holds the single request only; requests.* each row after each request
    table = read_json(out / "report" / "table.json")["rows"]
    assert sorted(row["method"] for row in table if row["prompt"] == "none") == sorted(
        ["base", "vanilla", "oracle", "ga", "memflex"]
    )
    rows = read_json(out / "report" / "requests.json")["rows"]
    assert {(row["method"], row["request"]) for row in rows} == {
        (label, r) for label in ("vanilla", "oracle", "ga", "memflex", "memflex+reused") for r in (1, 2)
    }
    by = {(row["method"], row["request"]): row for row in rows}
    assert by[("memflex+reused", 1)]["unlearn_success"] == by[("memflex", 1)]["unlearn_success"]
    # gradient ascent forgets what was requested: above the vanilla model on the same items after each request
    assert all(by[("ga", r)]["unlearn_success"] > by[("vanilla", r)]["unlearn_success"] for r in (1, 2))
    assert by[("ga", 1)]["unrequested_accuracy"] is not None and by[("ga", 2)]["unrequested_accuracy"] is None
    page = (out / "report" / "requests.md").read_text()
    assert "re-localized vs `memflex+reused` after request 2" in page
    assert "One request against 2 in turn" in page
    assert (out / "report" / "requests_privacy.png").stat().st_size > 10_000
    # a second invocation reuses every stage
    assert main(run_command(out, *sets(*REQUESTS))) == 0
    again = [
        line
        for line in (out / "stages.log").read_text().split("$ ")[-1].splitlines()
        if "s/step" in line or "Avg" in line
    ]
    assert any("requests/2" in line for line in again) and all(" cached " in line for line in again)


def test_request_chains_as_ray_tasks_give_the_serial_results(requests_run, tmp_path, capsys):
    import torch

    out = tmp_path / "run"
    shutil.copytree(requests_run, out)
    # ga's requests again, and memflex's with its reused twin (one task: the twin starts from memflex's first)
    gone = [("1", "ga"), ("2", "ga"), ("1", "memflex"), ("2", "memflex"), ("2", "memflex+reused")]
    for request, row in gone:
        shutil.rmtree(out / "privacy" / "requests" / request / "unlearn" / row)
        (out / "privacy" / "requests" / request / "eval" / f"{row}.json").unlink()
    ray = ("run.executor=ray", f"run.ray_cpus={torch.get_num_threads()}")  # the serial run's threads: the same sums
    assert main(run_command(out, *sets(*REQUESTS, *ray))) == 0
    trained = [line for line in capsys.readouterr().out.splitlines() if "] unlearn " in line and " ga: " in line]
    assert [line.split("]")[0] for line in trained if " cached " not in line] == [
        "[privacy/requests/1",
        "[privacy/requests/2",
    ]
    for request, row in gone:
        ours, serial = (
            read_json(run / "privacy" / "requests" / request / "eval" / f"{row}.json") for run in (out, requests_run)
        )
        assert ours["prompts"] == serial["prompts"] and ours["meta"]["key"] == serial["meta"]["key"]
