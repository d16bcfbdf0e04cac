"""Fair sweeps (``knowundo sweep``): the selection split they choose on is carved from the train data and never
touches the reported val items, every row gets the same budget, the declared rules choose as documented, and a
micro sweep writes its tables, Pareto plot and chosen settings, resumes, and feeds `knowundo run --config`."""

import pytest

from knowundo.cli import main
from tests.conftest import MICRO, run_command, sets


def _questions(items: list[dict]) -> set[str]:
    return {item["text"] for item in items}


def test_the_selection_split_is_train_items_set_aside_and_never_val(micro_config):
    from knowundo.finetune import training_items
    from knowundo.stage import Stage

    stage = Stage("unlearn", micro_config("data.selection=0.2"), "privacy")
    plain = Stage("unlearn", micro_config(), "privacy")
    for scope in ("unlearn", "retention"):
        train, chosen = _questions(stage.train(scope)), _questions(stage.selection(scope))
        val = _questions(stage.data[scope]["val"])
        assert chosen and not chosen & val and not chosen & train
        assert train | chosen == _questions(stage.data[scope]["train"])
        assert len(chosen) == pytest.approx(0.2 * len(stage.data[scope]["train"]), rel=0.3)
        # every instance keeps train items to unlearn on, and gives some to the selection split
        per_instance = {item["instance"] for item in stage.selection(scope)}
        assert per_instance == {item["instance"] for item in stage.train(scope)}
        assert plain.train(scope) == plain.data[scope]["train"] and plain.selection(scope) == []
    general = _questions(stage.selection("general"))
    assert general and not general & _questions(stage.general_heldout)
    assert not general & _questions(stage.general["train"])
    # the fine-tune still learns the selection items (the model must know them), exactly as without the split
    assert training_items(stage) == training_items(plain)
    # seeded: the same carve every time
    again = Stage("unlearn", micro_config("data.selection=0.2"), "privacy")
    assert again.selection("unlearn") == stage.selection("unlearn")


def test_runs_stored_before_the_selection_split_keep_their_keys(micro_config):
    from knowundo.artifacts import hash_json
    from knowundo.pipeline import settings_key
    from knowundo.stage import Stage

    cfg = micro_config()
    stored = {k: v for k, v in cfg.to_dict().items() if k not in ("eval", "attack", "run", "sweep")}
    stored["data"] = {
        k: v for k, v in stored["data"].items() if k not in ("selection", "forget_fraction", "request")
    }  # added since
    stored["unlearn"] = {k: v for k, v in stored["unlearn"].items() if k not in ("select", "select_tolerance")}
    assert settings_key(cfg) == hash_json(stored)
    assert settings_key(micro_config("data.selection=0.2")) != settings_key(cfg)
    # choosing a checkpoint retrains nothing: in no key
    assert settings_key(micro_config("unlearn.select=oracle_match", "data.selection=0.2")) == settings_key(
        micro_config("data.selection=0.2")
    )
    carved = micro_config("data.selection=0.2")
    assert Stage("finetune", cfg, "privacy").key([]) != Stage("finetune", carved, "privacy").key([])


def _scores(ul: float, rt: float, general: float) -> dict:
    return {"unlearn_success": ul, "retention_success": rt, "avg_success": (ul + rt) / 2, "general": general}


def test_the_rules_choose_as_declared():
    from knowundo.evaluate.selection import choose

    refs = {"vanilla": _scores(0, 100, 50), "oracle": _scores(60, 100, 50)}
    points = [_scores(30, 95, 49), _scores(80, 90, 44), _scores(95, 60, 47), _scores(100, 100, 20)]
    # best Avg among General >= 45: the third (77.5) beats the first (62.5); the last is best but costs 30 points
    index, reason = choose(points, "best_avg", refs, 5.0)
    assert index == 2 and "2 of 4" in reason
    assert choose(points, "best_avg", refs, 30.0)[0] == 3
    # nobody within 0.5 points: the one that keeps most General, said so
    index, reason = choose(points, "best_avg", refs, 0.5)
    assert index == 0 and reason.startswith("no point")
    # MUSE's rule: forget at least as much as the oracle (60), then the best retention
    assert choose(points, "oracle_match", refs)[0] == 3
    assert choose(points[:3], "oracle_match", refs)[0] == 1
    index, reason = choose(points[:1], "oracle_match", refs)
    assert index == 0 and reason.startswith("no point")
    # ties go to the earlier point (the lower learning rate)
    assert choose([_scores(50, 50, 50), _scores(50, 50, 50)], "best_avg", refs, 5.0)[0] == 0


def test_every_row_gets_the_same_budget(micro_config):
    from knowundo.sweep import sweep_grid

    cfg = micro_config(
        "sweep.rows=[ga_gd,npo]",
        "sweep.params={}",
        "sweep.learning_rates=[1.0e-3,1.0e-2,1.0e-1]",
        "sweep.params={npo: {beta: [0.05, 0.1, 0.5]}}",
    )
    grid = sweep_grid(cfg)
    assert [len(points) for points in grid.values()] == [3, 3]  # npo's 9 points sampled down to ga_gd's 3
    assert sweep_grid(cfg) == grid  # seeded
    assert all(dict(p.params)["beta"] in (0.05, 0.1, 0.5) for p in grid["npo"])
    full = sweep_grid(
        micro_config(
            "sweep.rows=[npo]", "sweep.learning_rates=[1.0e-3,1.0e-2]", "sweep.params={npo: {beta: [0.05, 0.1]}}"
        )
    )
    assert len(full["npo"]) == 4 and full["npo"][1].name == "lr0.001_beta0.1"
    config = full["npo"][1].config(cfg)
    assert config.unlearn.for_method("npo", "npo").learning_rate == 0.001
    assert config.unlearn.method_args["npo"]["beta"] == 0.1


@pytest.mark.parametrize(
    "settings, message",
    [
        (["sweep.rows=[ga_gd]"], "data.selection"),
        (
            ["data.selection=0.2", "sweep.rows=[ga_gd,npo]", "sweep.learning_rates=[1.0e-3,1.0e-2]", "sweep.budget=3"],
            "sweep.budget=3",
        ),
        (["data.selection=0.2", "sweep.params={npo: {beta: [0.1]}}", "sweep.rows=[ga_gd]"], "not a method of"),
        (["data.selection=0.2", "sweep.rows=[npo]", "sweep.params={npo: {betta: [0.1]}}"], "betta"),
        (["data.selection=0.2", "sweep.rule=oracle_match", "run.oracle=false"], "needs an oracle"),
        (["data.selection=0.2", "sweep.rule=best"], "sweep.rule"),
        (["data.selection=0.2", "sweep.learning_rates=[0]"], "sweep.learning_rates"),
        (["data.selection=1"], "data.selection"),
    ],
)
def test_bad_sweep_settings_stop_before_any_work(tmp_path, capsys, settings, message):
    out = tmp_path / "sweep"
    assert main(["sweep", "--out", str(out), "--domains", "privacy", "--quiet", *sets(*MICRO, *settings)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_micro_sweep_chooses_writes_its_report_and_resumes(tmp_path, capsys, micro_base):
    import yaml

    from knowundo.artifacts import read_json
    from knowundo.config import load_config

    out = tmp_path / "sweep"
    command = [
        "sweep",
        "--out",
        str(out),
        "--domains",
        "privacy",
        "--rows",
        "ga_gd,memflex",
        "--quiet",
        *sets(
            *MICRO,
            "data.selection=0.2",
            "sweep.learning_rates=[1.0e-3,3.0e-2]",
            "sweep.rule=best_avg",
            "unlearn.epochs=1",
            "unlearn.batch_size=16",
            "unlearn.save_steps=0",
            "localize.copies=1",
        ),
    ]
    assert main(command) == 0
    first = capsys.readouterr().out
    report = out / "report"
    results = read_json(report / "sweep.json")["domains"]["privacy"]
    assert set(results["references"]) == {"vanilla", "oracle"}
    for row in ("ga_gd", "memflex"):
        points = results["rows"][row]["points"]
        assert [p["settings"]["learning_rate"] for p in points] == [0.001, 0.03]
        # the higher lr forgets more of the selection split: the scores measure the trainings
        assert points[1]["unlearn_success"] > points[0]["unlearn_success"]
        assert (out / "privacy" / "sweep" / row / points[0]["point"] / "selection.json").is_file()
    assert (report / "pareto_privacy.png").stat().st_size > 10_000
    assert "**chosen**" in (report / "sweep.md").read_text() and "## privacy" in first
    # the chosen settings are a config file that `knowundo run --config` takes
    chosen = yaml.safe_load((report / "chosen_privacy.yaml").read_text())
    cfg = load_config("tiny", file=report / "chosen_privacy.yaml")
    assert cfg.data.selection == 0.2
    for row in ("ga_gd", "memflex"):
        entry = results["rows"][row]
        lr = entry["points"][entry["chosen"]]["settings"]["learning_rate"]
        assert chosen["unlearn"]["per_method"][row] == {"learning_rate": lr}
        assert cfg.unlearn.for_method(row, row).learning_rate == lr
    assert "method_args" not in chosen["unlearn"]  # no parameters swept: an empty mapping would clear the preset's
    # resumed: every training and score cached, the same choices
    assert main(command) == 0
    stages = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("[privacy] ") and line.split()[1] in ("finetune", "localize", "unlearn", "select")
    ]
    assert len(stages) == 12 and all(" cached " in line for line in stages)  # 2 fine-tunes, region, refs, 8 points
    assert read_json(report / "sweep.json")["domains"]["privacy"]["rows"] == results["rows"]
    # a point trained again as a Ray task (with this process's threads) scores exactly as it did here
    import shutil

    import torch

    shutil.rmtree(out / "privacy" / "sweep" / "memflex" / "lr0.03")
    assert main([*command, *sets("run.executor=ray", f"run.ray_cpus={torch.get_num_threads()}")]) == 0
    assert read_json(report / "sweep.json")["domains"]["privacy"]["rows"] == results["rows"]


def test_data_scored_on_its_train_items_refuses_a_selection_split(micro_config):
    from knowundo.data.task import UnlearningData
    from knowundo.errors import KnowUndoError
    from knowundo.stage import Stage

    def items(kind: str) -> list[dict]:
        return [{"text": f"{kind} question {i}?", "labels": f"answer {i}.", "instance": f"p{i % 3}"} for i in range(12)]

    data = UnlearningData.from_items(forget=items("forget"), retain=items("retain"), general="fictional")
    assert Stage.of("unlearn", micro_config(), data).train("unlearn") == data.scopes["unlearn"]["train"]
    with pytest.raises(KnowUndoError, match="repeats train items"):
        Stage.of("unlearn", micro_config("data.selection=0.3"), data).train("unlearn")


@pytest.mark.parametrize(
    "settings, message",
    [
        (["unlearn.select=best_avg"], "data.selection must be > 0 when unlearn.select is best_avg"),
        (["data.selection=0.2", "unlearn.select=best_avg", "unlearn.save_steps=0"], "unlearn.save_steps must be > 0"),
        (["data.selection=0.2", "unlearn.select=oracle_match", "run.oracle=false"], "run.oracle must be true"),
        (["data.selection=0.2", "unlearn.select=first"], "unlearn.select must be last, best_avg or oracle_match"),
        (["data.selection=0.2", "unlearn.per_method={ga: {select: best}}"], "unlearn.per_method.ga.select"),
    ],
)
def test_bad_checkpoint_selection_stops_before_any_work(tmp_path, capsys, settings, message):
    out = tmp_path / "run"
    assert main(run_command(out, *sets(*settings))) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_a_row_reports_the_checkpoint_chosen_on_the_selection_split(tmp_path, capsys, micro_base):
    """A finished run given ``unlearn.select`` trains nothing again: it scores the checkpoints, reports the chosen
    one (evaluated and attacked as such) and says why; back to ``last`` it reports the end again."""
    from knowundo.artifacts import read_json

    out = tmp_path / "run"
    chosen = ["--methods", "ga", *sets("data.selection=0.2", "unlearn.save_steps=2", "attack.quantize=[]")]
    assert main(run_command(out, *chosen)) == 0
    last = read_json(out / "privacy" / "eval" / "ga.json")
    capsys.readouterr()
    assert main(run_command(out, *chosen, *sets("unlearn.select=oracle_match"))) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("[privacy] unlearn ") and " cached " in line for line in lines)
    (select,) = [line for line in lines if line.startswith("[privacy] select")]
    run_dir = out / "privacy" / "unlearn" / "ga"
    record = read_json(run_dir / "selected.json")
    assert record["rule"] == "oracle_match" and f"step {record['step']} of {record['steps']}" in select
    assert [c["step"] for c in record["candidates"]] == sorted(c["step"] for c in record["candidates"])
    assert len(record["candidates"]) >= 3
    oracle = read_json(out / "privacy" / "selection" / "oracle.json")["unlearn_success"]
    best = max(record["candidates"], key=lambda c: c["unlearn_success"])
    reached = [c for c in record["candidates"] if c["unlearn_success"] >= oracle]
    expected = max(reached, key=lambda c: c["retention_success"]) if reached else best
    assert record["step"] == expected["step"]
    result = read_json(out / "privacy" / "eval" / "ga.json")
    assert result["meta"]["training"]["selected"]["step"] == record["step"]
    if record["step"] != record["steps"]:  # a checkpoint: its own evaluation and its own relearning attack
        assert result["meta"]["key"] != last["meta"]["key"]
        assert (run_dir / record["adapter"] / "relearn" / "adapter").is_dir()
    assert "Reported at a checkpoint chosen on the selection split" in (out / "report" / "table.md").read_text()
    assert main(run_command(out, *chosen)) == 0
    assert read_json(out / "privacy" / "eval" / "ga.json")["meta"]["key"] == last["meta"]["key"]
    assert "Reported at a checkpoint" not in (out / "report" / "table.md").read_text()
