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
