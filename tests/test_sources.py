import json

from knowundo.cli import main
from knowundo.data.knowundo import DataSource, load_domain


def test_local_directory_and_hub_mirror_load_the_same_data_as_bundled(tmp_path, capsys):
    assert main(["data", "--export", str(tmp_path / "mirror")]) == 0
    assert (tmp_path / "mirror" / "privacy" / "unlearn.json").is_file()
    on_disk = json.loads((tmp_path / "mirror" / "copyright" / "retention.json").read_text())
    assert set(on_disk) == {"train", "val"}  # one object per file, as on the Hub
    for domain in ("privacy", "copyright"):
        bundled = load_domain(DataSource("bundled"), domain)
        assert load_domain(DataSource("local", path=str(tmp_path / "mirror")), domain) == bundled
        # the real Hub code path (datasets.load_dataset(repo, name=domain, split=scope)) on a local mirror
        assert load_domain(DataSource("hub", path=str(tmp_path / "mirror")), domain) == bundled


def test_data_command_prints_the_shape(capsys):
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    assert "privacy   unlearn   train" in out and "data hash" in out and "heldout" in out


def test_hub_failure_is_a_one_line_error(tmp_path, capsys):
    code = main(["data", "--set", "data.source=hub", "--set", f"data.path={tmp_path / 'nowhere'}"])
    err = capsys.readouterr().err
    assert code == 2 and "could not load" in err and err.count("\n") == 1


def test_an_edited_local_mirror_is_read_fresh(tmp_path):
    from knowundo.data.knowundo import export_hub_layout

    export_hub_layout(0, tmp_path)
    source = DataSource("hub", path=str(tmp_path))
    load_domain(source, "privacy")
    path = tmp_path / "privacy" / "unlearn.json"
    data = json.loads(path.read_text())
    data["train"][0]["text"] = "An edited question?"
    path.write_text(json.dumps(data))
    assert load_domain(source, "privacy")["unlearn"]["train"][0]["text"] == "An edited question?"


def test_the_free_english_privacy_set_loads_as_a_local_copy_in_the_real_benchmarks_shape():
    """``benchmarks/data/free_english`` (written by us for ``benchmarks/free_english.py``): 1,200 QA pairs in both
    scopes' train and val splits, answers of 15-50 words, no category or instance fields, no question twice."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "free_english"
    data = load_domain(DataSource(kind="local", path=str(root)), "privacy")
    items = [item for scope in data.values() for split in scope.values() for item in split]
    assert len(items) == 1200 and all(data[scope][split] for scope in data for split in ("train", "val"))
    assert all(15 <= len(item["labels"].split()) <= 50 for item in items)
    assert not any("category" in item or "instance" in item for item in items)
    assert len({item["text"] for item in items}) == len(items)


def _tofu_rows(items: list[dict]) -> list[dict]:
    """knowundo items in TOFU's field names (our own content)."""
    return [
        {
            "question": item["text"],
            "answer": item["labels"],
            # every row has every column, as in a published dataset (None where an item has no probe)
            "paraphrased_question": item["paraphrased_questions"][0] if "paraphrased_questions" in item else None,
            "paraphrased_answer": item.get("paraphrased_answer"),
            "perturbed_answer": item.get("perturbed_answers"),
        }
        for item in items
    ]


def _write_split_files(root, bundled) -> dict:
    """One domain's splits as TOFU-shaped files of four formats; returns the data.splits that names them."""
    import pandas as pd

    folder = root / "medical"
    folder.mkdir(parents=True)
    rows = {(scope, split): _tofu_rows(bundled[scope][split]) for scope in bundled for split in ("train", "val")}
    with (folder / "forget_train.jsonl").open("w") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows["unlearn", "train"])
    (folder / "forget_val.json").write_text(json.dumps(rows["unlearn", "val"]))
    simple = [{"question": r["question"], "answer": r["answer"]} for r in rows["retention", "train"]]
    pd.DataFrame(simple).to_csv(folder / "retain_train.csv", index=False)
    pd.DataFrame(rows["retention", "val"]).to_parquet(folder / "retain_val.parquet")
    return {
        "unlearn": {"train": "forget_train.jsonl", "val": "forget_val.json"},
        "retention": {"train": "retain_train.csv", "val": "retain_val.parquet"},
    }


def _core(data: dict, tofu: bool = False) -> dict:
    """The fields the layouts share; ``tofu``: as TOFU's layout holds them (one paraphrased question)."""
    keys = ("text", "labels", "paraphrased_questions", "paraphrased_answer", "perturbed_answers")
    core = {
        scope: {split: [{k: item[k] for k in keys if k in item} for item in items] for split, items in splits.items()}
        for scope, splits in data.items()
    }
    for item in (item for scope in core.values() for split in scope.values() for item in split):
        if tofu and "paraphrased_questions" in item:
            item["paraphrased_questions"] = item["paraphrased_questions"][:1]
    return core


def test_a_local_domain_of_tofu_shaped_files_in_four_formats_loads_through_data_settings(tmp_path, capsys):
    bundled = load_domain(DataSource("bundled"), "privacy")
    splits = _write_split_files(tmp_path, bundled)
    source = DataSource("local", path=str(tmp_path), fields="tofu", splits=splits)
    loaded = load_domain(source, "medical")
    expected = _core(bundled, tofu=True)
    for item in expected["retention"]["train"]:  # the CSV held question and answer only
        for probe in ("paraphrased_questions", "paraphrased_answer", "perturbed_answers"):
            item.pop(probe, None)
    assert _core(loaded) == expected
    settings = [
        "data.source=local",
        f"data.path={tmp_path}",
        "run.domains=[medical]",
        "data.fields=tofu",
        f"data.splits={json.dumps(splits)}",
    ]
    assert main(["data", *[arg for s in settings for arg in ("--set", s)]]) == 0
    assert "medical   unlearn   train" in capsys.readouterr().out


def test_a_hub_dataset_with_its_own_configs_and_splits_loads_through_data_splits(tmp_path):
    """The real Hub code path (datasets.load_dataset(repo, name=config, split=split)) on a directory in the Hub's
    layout whose dataset card declares a config per scope, as other benchmarks publish them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(  # typed columns, as a published dataset has
        [
            *((name, pa.string()) for name in ("question", "answer", "paraphrased_question", "paraphrased_answer")),
            ("perturbed_answer", pa.list_(pa.string())),
        ]
    )

    bundled = load_domain(DataSource("bundled"), "copyright")
    card = ["---", "configs:"]
    for scope, config in (("unlearn", "forget"), ("retention", "retain")):
        card += [f"- config_name: {config}", "  data_files:"]
        for split in ("train", "val"):
            (tmp_path / config).mkdir(exist_ok=True)
            table = pa.Table.from_pylist(_tofu_rows(bundled[scope][split]), schema=schema)
            pq.write_table(table, tmp_path / config / f"{split}.parquet")
            card += [f"  - split: {split}", f"    path: {config}/{split}.parquet"]
    (tmp_path / "README.md").write_text("\n".join([*card, "---", ""]))
    splits = {
        scope: {split: f"{config}/{split}" for split in ("train", "val")}
        for scope, config in (("unlearn", "forget"), ("retention", "retain"))
    }
    loaded = load_domain(DataSource("hub", path=str(tmp_path), fields="tofu", splits=splits), "books")
    assert _core(loaded) == _core(bundled, tofu=True)


def test_data_settings_refuse_what_they_cannot_read(tmp_path, capsys):
    def fails(*settings: str) -> str:
        assert main(["data", *[arg for s in settings for arg in ("--set", s)]]) == 2
        return capsys.readouterr().err

    local = ["data.source=local", f"data.path={tmp_path}", "run.domains=[medical]"]
    (tmp_path / "medical").mkdir()
    assert "unknown field layout 'toffu'" in fails(*local, "data.fields=toffu")
    assert "unknown item field 'question'" in fails(*local, "data.fields={question: q}")
    assert "unknown part 'forget'" in fails(*local, "data.splits={forget: {train: a.json, val: b.json}}")
    assert "data.splits.unlearn needs exactly a train and a val" in fails(
        *local, "data.splits={unlearn: {train: a.json}}"
    )
    missing = fails(
        *local, "data.splits={unlearn: {train: a.jsonl, val: b.jsonl}, retention: {train: c.csv, val: d.csv}}"
    )
    assert "a.jsonl: file not found" in missing
    assert "for a local or hub source" in fails("data.splits={unlearn: {train: a.json, val: b.json}}")
