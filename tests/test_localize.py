"""MemFlex: localization on train splits only, region files, freezing, row masks, and the MemFlex run."""

import json

import pytest
import torch
from safetensors.torch import load_file

from knowundo import localize as localize_module
from knowundo.cli import main
from knowundo.data.knowundo import DataSource, load_domain
from knowundo.methods import defines_region, get_method, method_names
from knowundo.models.load import load_adapter, load_base
from knowundo.region import apply_region, load_region, lora_parameters
from tests.conftest import MICRO, sets

SHORT = [
    *MICRO,
    "unlearn.epochs=1",
    "unlearn.batch_size=4",
    "unlearn.grad_accum=2",
    "unlearn.save_steps=0",
    "localize.copies=1",
]


@pytest.fixture(scope="module")
def region_dir(finetuned_privacy, tmp_path_factory):
    out = tmp_path_factory.mktemp("loc") / "privacy"
    assert (
        main(
            [
                "localize",
                "--domain",
                "privacy",
                "--finetuned",
                str(finetuned_privacy),
                "--out",
                str(out),
                "--top-k",
                "6",
                *sets(*SHORT),
            ]
        )
        == 0
    )
    return out


def test_gradients_come_from_train_items_only(finetuned_privacy, tmp_path, monkeypatch, micro_config):
    seen = []
    original = localize_module.encode_items
    monkeypatch.setattr(localize_module, "encode_items", lambda items, f: seen.extend(items) or original(items, f))
    localize_module.localize(
        micro_config("localize.copies=1"), "privacy", finetuned_privacy / "adapter", tmp_path / "loc"
    )
    data = load_domain(DataSource(), "privacy")
    train = {i["text"] for s in data.values() for i in s["train"]}
    val = {i["text"] for s in data.values() for i in s["val"]}
    assert seen and {i["text"] for i in seen} == train and not val & {i["text"] for i in seen}


def test_region_file_round_trips_and_records_its_source(region_dir, micro_config, finetuned_privacy):
    region = json.loads((region_dir / "region.json").read_text())
    assert region["selection"]["kind"] == "top_k" and region["selected_parameters"] == 6
    assert region["source"]["adapter_hash"] and region["source"]["data_hash"] and region["source"]["copies"] == 1
    assert all({"cosine", "unlearn_mean_abs", "selected"} <= set(p) for p in region["parameters"])
    model, _ = load_base(micro_config())
    model = load_adapter(model, finetuned_privacy / "adapter", trainable=True)
    masks = load_region(region_dir / "region.json", model)
    assert {n for n, m in masks.items() if m.any()} == {p["parameter"] for p in region["parameters"] if p["selected"]}
    assert (region_dir / "heatmap.png").stat().st_size > 5000
    assert (region_dir / "gradients.safetensors").is_file()


def test_cli_sets_mu_sigma_and_quantile(finetuned_privacy, region_dir, tmp_path, capsys):
    # the cached gradients are reused (a copy of them: the shared region stays as it is); only the selection changes
    import shutil

    copy = shutil.copytree(region_dir, tmp_path / "region")
    base = ["localize", "--domain", "privacy", "--finetuned", str(finetuned_privacy), "--out", str(copy)]
    assert main([*base, "--mu", "0.5", "--sigma", "1e-3", *sets(*SHORT)]) == 0
    selection = json.loads((copy / "region.json").read_text())["selection"]
    assert (selection["kind"], selection["mu"], selection["sigma"]) == ("thresholds", 0.5, 1e-3)
    assert main([*base, "--quantile", "0.4", *sets(*SHORT)]) == 0
    assert json.loads((copy / "region.json").read_text())["selection"]["kind"] == "quantile"
    assert (copy / "gradients.json").read_text() == (region_dir / "gradients.json").read_text()
    capsys.readouterr()
    assert main([*base, "--mu", "0.5", "--quantile", "0.4", *sets(*SHORT)]) == 2
    assert "choose one selection" in capsys.readouterr().err


def test_row_masks_zero_exactly_the_unselected_rows(micro_config, finetuned_privacy):
    model, tok = load_base(micro_config())
    model = load_adapter(model, finetuned_privacy / "adapter", trainable=True)
    params = lora_parameters(model)
    name = next(n for n in params if "lora_B" in n)
    rows = params[name].shape[0]
    mask = torch.zeros(rows, dtype=torch.bool)
    mask[::3] = True
    apply_region(model, {name: mask}, weight_decay=0.0)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [name]
    ids = tok("Who is the father of someone?", return_tensors="pt")["input_ids"]
    model(input_ids=ids, labels=ids).loss.backward()
    grad = params[name].grad
    assert (grad[~mask] == 0).all() and (grad[mask].abs().sum(1) > 0).all()


def test_memflex_changes_only_the_region_and_runs_the_configured_schedule(finetuned_privacy, region_dir, tmp_path):
    out = tmp_path / "memflex"
    assert (
        main(
            [
                "unlearn",
                "--domain",
                "privacy",
                "--method",
                "memflex",
                "--finetuned",
                str(finetuned_privacy),
                "--region",
                str(region_dir / "region.json"),
                "--out",
                str(out),
                *sets(*SHORT, "unlearn.per_method={memflex: {learning_rate: 0.02}}"),
            ]
        )
        == 0
    )
    record = json.loads((out / "unlearn.json").read_text())
    assert record["optimizer"] == "AdamW" and record["learning_rate"] == 0.02 and record["scheduler"] == "cosine"
    lrs = record["learning_rates"]
    assert max(lrs) == pytest.approx(0.02, rel=0.05) and lrs[-1] < 0.1 * max(lrs)  # cosine decay of that lr
    selected = {
        p["parameter"].replace(".default", "")
        for p in json.loads((region_dir / "region.json").read_text())["parameters"]
        if p["selected"]
    }
    before = load_file(finetuned_privacy / "adapter" / "adapter_model.safetensors")
    after = load_file(out / "adapter" / "adapter_model.safetensors")
    assert record["optimized_parameters"] == sum(before[k].numel() for k in selected)  # the optimizer sees the region
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= selected
    assert all(torch.equal(before[k], after[k]) for k in before if k not in selected)  # bit-identical outside


def test_row_region_keeps_unselected_rows_bit_identical(finetuned_privacy, tmp_path):
    loc = tmp_path / "rows"
    assert (
        main(
            [
                "localize",
                "--domain",
                "privacy",
                "--finetuned",
                str(finetuned_privacy),
                "--out",
                str(loc),
                "--granularity",
                "row",
                "--quantile",
                "0.3",
                *sets(*SHORT),
            ]
        )
        == 0
    )
    out = tmp_path / "ga_rows"
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
                "--region",
                str(loc / "region.json"),
                "--out",
                str(out),
                *sets(*SHORT),
            ]
        )
        == 0
    )
    masks = {k.replace(".default", ""): m.bool() for k, m in load_file(loc / "region_rows.safetensors").items()}
    before = load_file(finetuned_privacy / "adapter" / "adapter_model.safetensors")
    after = load_file(out / "adapter" / "adapter_model.safetensors")
    moved = 0
    for name, mask in masks.items():
        assert torch.equal(before[name][~mask], after[name][~mask])
        moved += int((before[name][mask] != after[name][mask]).any())
    assert moved > 0


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            lambda r: r["parameters"].__setitem__(0, {**r["parameters"][0], "parameter": "no.such.module"}),
            "do not exist in the model",
        ),
        (lambda r: [p.__setitem__("selected", False) for p in r["parameters"]], "the region is empty"),
    ],
)
def test_bad_region_files_are_refused(finetuned_privacy, region_dir, tmp_path, capsys, edit, message):
    region = json.loads((region_dir / "region.json").read_text())
    edit(region)
    bad = tmp_path / "region.json"
    bad.write_text(json.dumps(region))
    code = main(
        [
            "unlearn",
            "--domain",
            "privacy",
            "--method",
            "ga",
            "--finetuned",
            str(finetuned_privacy),
            "--region",
            str(bad),
            "--out",
            str(tmp_path / "x"),
            *sets(*SHORT),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_memflex_without_a_region_is_refused(finetuned_privacy, tmp_path, capsys):
    code = main(
        [
            "unlearn",
            "--domain",
            "privacy",
            "--method",
            "memflex",
            "--finetuned",
            str(finetuned_privacy),
            "--out",
            str(tmp_path / "x"),
            *sets(*SHORT),
        ]
    )
    assert code == 2 and "give it one (--region" in capsys.readouterr().err


def test_a_missing_region_file_is_refused_before_any_cached_result_is_reused(finetuned_privacy, tmp_path, capsys):
    out = str(tmp_path / "ga")
    common = [
        "unlearn",
        "--domain",
        "privacy",
        "--method",
        "ga",
        "--finetuned",
        str(finetuned_privacy),
        "--out",
        out,
        *sets(*SHORT),
    ]
    assert main(common) == 0  # a finished run without region in the same directory
    capsys.readouterr()
    assert main([*common, "--region", str(tmp_path / "missing.json")]) == 2
    assert "region file not found" in capsys.readouterr().err


COMPOSABLE = [
    name for name in method_names() if not get_method(name).localized and not defines_region(get_method(name))
]


@pytest.mark.slow
@pytest.mark.parametrize("name", COMPOSABLE)
def test_every_method_trains_only_inside_a_region(name, finetuned_privacy, region_dir, tmp_path):
    out = tmp_path / name
    assert (
        main(
            [
                "unlearn",
                "--domain",
                "privacy",
                "--method",
                name,
                "--finetuned",
                str(finetuned_privacy),
                "--region",
                str(region_dir / "region.json"),
                "--out",
                str(out),
                *sets(*SHORT),
            ]
        )
        == 0
    )
    record = json.loads((out / "unlearn.json").read_text())
    assert record["label"] == f"{name}@memflex"
    selected = {
        p["parameter"].replace(".default", "")
        for p in json.loads((region_dir / "region.json").read_text())["parameters"]
        if p["selected"]
    }
    before = load_file(finetuned_privacy / "adapter" / "adapter_model.safetensors")
    after = load_file(out / "adapter" / "adapter_model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= selected
    assert all(torch.equal(before[k], after[k]) for k in before if k not in selected)
