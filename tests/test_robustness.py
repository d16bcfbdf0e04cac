"""The oracle, forget quality, privleak, the truth ratio and the relearning attack: formulas against values
computed by hand, what the oracle and the attacker train on, and the robustness table of a micro run."""

import json
import math

import pytest
import torch

from knowundo.artifacts import read_json
from knowundo.cli import main
from knowundo.data.validate import PROBE_FIELDS
from knowundo.evaluate.metrics.forget_quality import ks_p_value
from knowundo.evaluate.metrics.mia import auc
from knowundo.evaluate.metrics.paraphrase import truth_score
from knowundo.evaluate.metrics.privleak import privleak
from knowundo.evaluate.metrics.relearn import recovered_share
from knowundo.evaluate.run import EvalContext

from .conftest import MICRO, sets


def test_ks_p_value_matches_the_exact_two_sample_distribution():
    # two samples of 3 with no overlap: D = 1, reached by 2 of the C(6, 3) = 20 orderings -> p = 0.1
    assert ks_p_value([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx({"p": 0.1, "log10_p": -1.0})
    # identical samples: D = 0 -> p = 1
    assert ks_p_value([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])["p"] == pytest.approx(1.0)
    # one crossing: x = [1, 2, 5], y = [3, 4, 6]: D = 2/3, reached by 8 of 20 orderings -> p = 0.4 ... computed
    # by enumerating all 20 splits of the pooled ranks
    from itertools import combinations

    pooled, x = [1, 2, 3, 4, 5, 6], [1, 2, 5]

    def stat(a):
        b = [v for v in pooled if v not in a]
        return max(abs(sum(v <= t for v in a) / 3 - sum(v <= t for v in b) / 3) for t in pooled)

    observed = stat(x)
    by_hand = sum(stat(list(c)) >= observed - 1e-12 for c in combinations(pooled, 3)) / 20
    assert ks_p_value([1.0, 2.0, 5.0], [3.0, 4.0, 6.0])["p"] == pytest.approx(by_hand)


def test_privleak_against_hand_computed_aucs():
    members, others = [0.9, 0.8, 0.3], [0.5, 0.2, 0.1]
    # 9 member/non-member pairs; the member scores higher in 8 -> AUC 8/9
    assert auc(members, others) == pytest.approx(8 / 9)
    assert privleak(8 / 9, 0.5) == pytest.approx((8 / 9 - 0.5) / 0.5 * 100)
    assert privleak(0.5, 0.5) == 0.0
    assert privleak(0.25, 0.5) == pytest.approx(-50.0)


def test_recovered_share_of_the_gap():
    assert recovered_share(before=80.0, after=50.0, vanilla=20.0) == pytest.approx(50.0)
    assert recovered_share(before=80.0, after=80.0, vanilla=20.0) == 0.0
    assert recovered_share(before=20.5, after=10.0, vanilla=20.0) is None  # nothing was forgotten
    assert recovered_share(before=80.0, after=50.0, vanilla=None) is None


def test_truth_ratio_and_paraphrase_accuracy_per_item():
    """The probe pass groups derived items back to their val item: R = mean(exp(mlp_wrong)) / exp(mlp_para)."""
    items = [
        {
            "text": "q0",
            "labels": "a0",
            "paraphrased_questions": ["p0", "p0b"],
            "paraphrased_answer": "t0",
            "perturbed_answers": ["w0", "w0b", "w0c"],
        },
        {"text": "q1", "labels": "a1"},
    ]  # no probe fields: None, never 0
    logprob = {"t0": math.log(0.5), "w0": math.log(0.1), "w0b": math.log(0.2), "w0c": math.log(0.3)}
    accuracy = {"p0": 40.0, "p0b": 60.0}

    ctx = EvalContext.__new__(EvalContext)
    ctx._probes = {}
    ctx.robustness_items = lambda scope: items
    ctx.score = lambda chosen: {
        "per_item": [
            {"index": i, "accuracy": accuracy.get(item["text"], 0.0), "mean_logprob": logprob.get(item["labels"], 0.0)}
            for i, item in enumerate(chosen)
        ]
    }
    first, second = ctx.probes("unlearn")
    assert first["truth_ratio"] == pytest.approx((0.1 + 0.2 + 0.3) / 3 / 0.5)
    assert first["log_truth_ratio"] == pytest.approx(math.log((0.1 + 0.2 + 0.3) / 3 / 0.5))
    assert first["paraphrase_accuracy"] == pytest.approx(50.0)
    assert second == {"paraphrase_accuracy": None, "truth_ratio": None, "log_truth_ratio": None}
    assert truth_score(0.4) == pytest.approx(0.6) and truth_score(1.7) == 0.0


def test_the_oracle_never_sees_an_unlearn_item(micro_config, micro_base, tmp_path, monkeypatch):
    import knowundo.finetune as finetune_module
    from knowundo.stage import Stage

    seen = []

    def spy(items, formatter):
        seen.extend(items)
        raise RuntimeError("stop after the spy")

    monkeypatch.setattr(finetune_module, "encode_items", spy)
    cfg = micro_config()
    with pytest.raises(RuntimeError, match="spy"):
        finetune_module.finetune(cfg, "privacy", tmp_path / "oracle", progress=False, oracle=True)
    data = Stage("finetune", cfg, "privacy").data
    key = lambda item: (item["text"], item["labels"])  # noqa: E731
    unlearn = {key(i) for split in data["unlearn"].values() for i in split}
    retention = {key(i) for split in data["retention"].values() for i in split}
    replayed = {key(i) for i in Stage("finetune", cfg, "privacy").general["train"]}  # general_replay of the preset
    assert seen and not {key(i) for i in seen} & unlearn
    assert {key(i) for i in seen} - replayed == retention


def test_relearning_trains_only_on_unlearn_train_items(micro_config, finetuned_privacy, tmp_path, monkeypatch):
    import shutil

    import knowundo.attacks.relearn as relearn_module
    from knowundo.stage import Stage

    cfg = micro_config("attack.relearn_fraction=0.25")
    data = Stage("relearn", cfg, "privacy").data
    chosen = relearn_module.relearn_items(Stage("relearn", cfg, "privacy"))
    train = [(i["text"], i["labels"]) for i in data["unlearn"]["train"]]
    assert len(chosen) == round(0.25 * len(train))
    assert {(i["text"], i["labels"]) for i in chosen} <= set(train)
    assert chosen == relearn_module.relearn_items(Stage("relearn", cfg, "privacy"))  # seeded

    seen = []

    def spy(items, formatter):
        seen.extend(items)
        raise RuntimeError("stop after the spy")

    monkeypatch.setattr(relearn_module, "encode_items", spy)
    attacked = tmp_path / "unlearned" / "adapter"
    shutil.copytree(finetuned_privacy / "adapter", attacked)
    with pytest.raises(RuntimeError, match="spy"):
        relearn_module.relearn(cfg, "privacy", attacked, progress=False)
    assert seen == chosen
    assert not (tmp_path / "unlearned" / "relearn").exists()


@pytest.mark.parametrize(
    "setting, message",
    [
        ("attack.relearn_fraction=0", "attack.relearn_fraction must be in (0, 1]"),
        ("attack.relearn_fraction=1.5", "attack.relearn_fraction must be in (0, 1]"),
        ("attack.relearn_steps=0", "attack.relearn_steps must be >= 1"),
        ("attack.quantize=[int3-g64]", "attack.quantize[0] must be"),
        ("attack.quantize=[int8-g0]", "attack.quantize[0] must be"),
    ],
)
def test_attack_settings_are_checked_before_any_work(setting, message, tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "run"), *sets(setting)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_run_has_the_oracle_row_and_the_robustness_table(reference_run):
    eval_dir = reference_run / "privacy" / "eval"
    oracle, vanilla, ga = (read_json(eval_dir / f"{label}.json") for label in ("oracle", "vanilla", "ga"))
    assert oracle["meta"]["training"]["oracle"] is True
    # the oracle is the reference: compared with itself there is nothing to report
    assert oracle["forget_quality"]["p"] is None and oracle["privleak"]["privleak"] is None
    for result in (vanilla, ga):
        assert result["forget_quality"] == {
            **result["forget_quality"],
            **ks_p_value(result["forget_quality"]["values"], oracle["forget_quality"]["values"]),
        }
        assert result["forget_quality"]["statistic"] == "log_truth_ratio"
        assert len(result["forget_quality"]["values"]) == result["prompts"]["none"]["unlearn"]["items"]
        auc_model, auc_oracle = result["privleak"]["auc"]["min_k"], oracle["privleak"]["auc"]["min_k"]
        assert result["privleak"]["privleak"]["min_k"] == pytest.approx(privleak(auc_model, auc_oracle))
    assert "relearn" not in vanilla and set(ga["quantization"]) == {"int4-g64"}
    assert ga["relearn"]["unlearn_success_before"] == pytest.approx(ga["prompts"]["none"]["unlearn_success"])
    relearned = read_json(reference_run / "privacy" / "unlearn" / "ga" / "relearn" / "relearn.json")
    assert relearned["steps"] == 4  # attack.relearn_steps of the reference run
    report = reference_run / "report"
    rows = json.loads((report / "robustness.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["base", "vanilla", "oracle", "ga", "memflex"]
    robustness = (report / "robustness.md").read_text()
    assert all(header in robustness for header in ("Forget Q", "UL Gibberish (oracle)", "RT Refusal"))
    # every row is judged by the oracle too, each against the threshold from the oracle's gold perplexities
    for result in (oracle, vanilla, ga):
        threshold = result["fluency_judge"]["oracle"]["threshold"]
        assert threshold == oracle["fluency_judge"]["oracle"]["threshold"]
        records = result["prompts"]["none"]["retention"]["per_item"]
        assert all(
            r["oracle_gibberish"] == (r["oracle_judge_ppl"] > threshold)
            for r in records
            if r["oracle_judge_ppl"] is not None
        )
    assert [r["plain_retention_oracle_gibberish_rate"] for r in rows] == [
        read_json(eval_dir / f"{r['method']}.json")["prompts"]["none"]["retention"]["oracle_gibberish_rate"]
        for r in rows
    ]
    assert (report / "robustness_privacy.png").stat().st_size > 0
    assert "oracle" in [
        line.split("|")[1].strip() for line in (report / "table.md").read_text().splitlines() if line.startswith("| ")
    ]


def test_data_without_probe_fields_or_holdout_shows_dashes_never_zeros(micro_config, finetuned_privacy, tmp_path):
    from knowundo.data.knowundo import export_hub_layout
    from knowundo.evaluate.run import evaluate_checkpoint
    from knowundo.report import build_report

    root = export_hub_layout(0, tmp_path / "data")
    for domain in ("privacy", "copyright"):
        (root / domain / "holdout.json").unlink()
        for scope in ("unlearn", "retention"):
            path = root / domain / f"{scope}.json"
            data = json.loads(path.read_text())
            data["val"] = [{k: v for k, v in item.items() if k not in PROBE_FIELDS} for item in data["val"]]
            path.write_text(json.dumps(data))
    cfg = micro_config(
        "data.source=local",
        f"data.path={root}",
        "eval.prompts=[none]",
        "eval.generate=false",
        "eval.general_mc=false",
        "attack.quantize=[]",
    )
    result = evaluate_checkpoint(cfg, "privacy", finetuned_privacy / "adapter", tmp_path / "eval" / "vanilla.json")
    assert result["paraphrase"]["unlearn"] == {"items": 0, "success": None, "truth": None}
    assert result["forget_quality"]["statistic"] == "mean_logprob" and result["forget_quality"]["p"] is None
    assert "privleak" not in result  # no holdout: not computed rather than computed against nothing
    report = build_report(tmp_path / "eval", tmp_path / "report")
    lines = (report / "robustness.md").read_text().splitlines()
    header = [
        cell.strip() for cell in next(line for line in lines if line.startswith("| Method")).strip("|").split("|")
    ]
    row = next(line for line in lines if line.startswith("| vanilla"))
    cells = dict(zip(header, (cell.strip() for cell in row.strip("|").split("|"))))
    # only UL, RT and the adversarial probes that need no probe fields have values: the rest show "-", never 0
    valued = {"Method", "UL ↑", "RT ↑", "Worst probe UL ↑"}
    assert all(value == "-" for name, value in cells.items() if name not in valued), cells
    assert cells["Worst probe UL ↑"] != "-"
    probes = read_json(report / "probes.json")["rows"][0]
    assert probes["probe_multiple_choice_unlearn_success"] is None  # it needs the probe fields
    assert probes["probe_role_play_unlearn_success"] is not None


@pytest.mark.slow  # two trainings through the CLI (the reference run covers both stages in the fast suite)
def test_oracle_and_relearn_commands(micro_base, tmp_path, capsys):
    assert main(["finetune", "--domain", "privacy", "--oracle", "--out", str(tmp_path / "oracle"), *sets(*MICRO)]) == 0
    assert "fine-tuned the oracle of privacy" in capsys.readouterr().out
    assert read_json(tmp_path / "oracle" / "finetune.json")["oracle"] is True
    adapter = tmp_path / "oracle" / "adapter"
    assert main(["relearn", "--domain", "privacy", "--adapter", str(adapter), *sets(*MICRO)]) == 0
    assert "relearned privacy: 10 steps" in capsys.readouterr().out
    assert (tmp_path / "oracle" / "relearn" / "adapter" / "adapter_model.safetensors").is_file()


def test_a_reference_that_is_not_a_result_is_one_line(micro_base, tmp_path, capsys):
    (tmp_path / "other.json").write_text("{}")
    for reference in (tmp_path / "missing.json", tmp_path / "other.json"):
        assert main(["eval", "--domain", "privacy", "--oracle", str(reference), *sets(*MICRO)]) == 2
        err = capsys.readouterr().err
        assert "oracle reference" in err or "needed as oracle" in err
        assert len(err.strip().splitlines()) == 1


def _fake_result(path, domain, data, key, oracle, adapter=None):
    from knowundo.artifacts import EVAL_RESULT_KIND, hash_json, write_json

    write_json(
        path,
        {
            "kind": EVAL_RESULT_KIND,
            "domain": domain,
            "label": "x",
            "prompts": {},
            "columns": [],
            "meta": {
                "key": key,
                "data_hash": hash_json(data),
                "adapter": adapter and str(adapter),
                "training": {"stage": "finetune", "oracle": oracle},
            },
        },
    )
    return path


def test_references_are_checked_and_key_the_evaluation(micro_config, finetuned_privacy, tmp_path, capsys, monkeypatch):
    from knowundo.evaluate.run import RESULT_FORMAT, eval_key
    from knowundo.stage import Stage

    cfg = micro_config()
    data = Stage("eval", cfg, "privacy").data
    adapter = finetuned_privacy / "adapter"
    oracle = _fake_result(tmp_path / "oracle.json", "privacy", data, "k1", oracle=True, adapter=adapter)
    vanilla = _fake_result(tmp_path / "vanilla.json", "privacy", data, "k2", oracle=False)
    first = eval_key(cfg, "privacy", adapter, "x", {"oracle": oracle, "vanilla": vanilla})
    assert first != eval_key(cfg, "privacy", adapter, "x", {"oracle": oracle})
    monkeypatch.setattr("knowundo.evaluate.run.RESULT_FORMAT", RESULT_FORMAT + 1)  # results of an older layout
    assert eval_key(cfg, "privacy", adapter, "x", {"oracle": oracle, "vanilla": vanilla}) != first  # are redone
    monkeypatch.undo()
    _fake_result(oracle, "privacy", data, "k3", oracle=True, adapter=adapter)  # the oracle was evaluated again
    assert eval_key(cfg, "privacy", adapter, "x", {"oracle": oracle, "vanilla": vanilla}) != first

    (tmp_path / "list.json").write_text("[]")
    other = _fake_result(tmp_path / "other.json", "privacy", {"other": "data"}, "k4", oracle=True, adapter=adapter)
    gone = _fake_result(tmp_path / "gone.json", "privacy", data, "k5", oracle=True, adapter=tmp_path / "deleted")
    for argv, message in (
        (["--oracle", str(gone)], "(the second fluency judge) is not there"),
        (["--oracle", str(vanilla)], "not the evaluation of an oracle"),
        (["--vanilla", str(oracle)], "not the evaluation of a fine-tuned model"),
        (["--oracle", str(tmp_path / "list.json")], "not an evaluation result"),
        (["--oracle", str(other)], "evaluated on other data"),
    ):
        assert main(["eval", "--domain", "privacy", "--adapter", str(adapter), *argv, *sets(*MICRO)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_swapped_checkpoint_leaves_the_evaluated_one_as_it_was(micro_config, finetuned_privacy):
    from knowundo.models.load import SWAPPED_ADAPTER, load_adapter, load_base

    model, _ = load_base(micro_config())
    model = load_adapter(model, finetuned_privacy / "adapter")
    before = {name: (p.requires_grad, p.detach().clone()) for name, p in model.named_parameters()}
    ctx = EvalContext.__new__(EvalContext)
    ctx.model = model
    with ctx.swapped_checkpoint(finetuned_privacy / "adapter"):
        assert model.active_adapter == SWAPPED_ADAPTER
    assert model.active_adapter == "default" and SWAPPED_ADAPTER not in model.peft_config
    after = dict(model.named_parameters())
    assert set(after) == set(before)
    for name, (requires_grad, value) in before.items():
        assert after[name].requires_grad == requires_grad and torch.equal(after[name], value), name


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.slow  # trainings (the fast suite stays under 2 minutes)
def test_the_oracle_judges_as_the_oracle_adapter_on_any_evaluated_model(
    micro_config, micro_base, tmp_path, finetuned_privacy
):
    """The second fluency judge is the oracle's adapter swapped into whatever model is evaluated (an adapter, or
    the bare base model of the base row), and the model is exactly as before afterwards; a model that has no
    adapter to switch (a full checkpoint) gets both judges loaded beside it, and an oracle given as a model is
    loaded beside as such."""
    from knowundo.finetune import finetune
    from knowundo.models.load import load_adapter, load_base, model_beside

    cfg = micro_config()
    oracle_dir = tmp_path / "oracle"
    finetune(cfg, "privacy", oracle_dir, progress=False, oracle=True)
    ids = torch.tensor([[5, 17, 42, 9, 3]])
    expected = _logits(load_adapter(load_base(cfg)[0], oracle_dir / "adapter"), ids)
    base_logits = _logits(load_base(cfg)[0], ids)
    full = load_adapter(load_base(cfg)[0], finetuned_privacy / "adapter").merge_and_unload()
    load_adapter(load_base(cfg)[0], oracle_dir / "adapter").merge_and_unload().save_pretrained(tmp_path / "given")
    adapter_oracle = {"oracle": {"meta": {"adapter": str(oracle_dir / "adapter")}}}
    given_oracle = {
        "oracle": {"meta": {"adapter": None, "training": {"stage": "given", "model": str(tmp_path / "given")}}}
    }
    for evaluated, beside, references in (
        (load_base(cfg)[0], False, adapter_oracle),
        (load_adapter(load_base(cfg)[0], finetuned_privacy / "adapter"), False, adapter_oracle),
        (full, True, adapter_oracle),
        (load_adapter(load_base(cfg)[0], finetuned_privacy / "adapter"), False, given_oracle),
    ):
        before, names = _logits(evaluated, ids), [name for name, _ in evaluated.named_parameters()]
        ctx = EvalContext.__new__(EvalContext)
        ctx.model, ctx.training, ctx.cfg, ctx.references = evaluated, None, cfg, references
        ctx.base_judge = (lambda: model_beside(cfg)) if beside else None
        assert ctx.judges() == ["base", "oracle"]
        with ctx.judge("oracle") as judge:
            assert torch.allclose(_logits(judge, ids), expected, atol=1e-5)
        with ctx.judge("base") as judge:
            assert torch.allclose(_logits(judge, ids), base_logits, atol=1e-5)
        assert torch.equal(_logits(evaluated, ids), before)
        assert [name for name, _ in evaluated.named_parameters()] == names  # no LoRA layer left behind
    # the oracle judges itself with its own adapter; a model without an oracle reference has the base judge only
    ctx = EvalContext.__new__(EvalContext)
    ctx.model, ctx.training, ctx.references, ctx.base_judge = (
        load_adapter(load_base(cfg)[0], oracle_dir / "adapter"),
        {"oracle": True},
        {},
        None,
    )
    with ctx.judge("oracle") as judge:
        assert torch.allclose(_logits(judge, ids), expected, atol=1e-5)
    ctx.training = None
    assert ctx.judges() == ["base"]
