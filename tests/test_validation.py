"""Every bad-input case of the data layer: a one-line message naming the file and item, and exit code 2."""

import json

import pytest

from knowundo.cli import main
from knowundo.data.knowundo import export_hub_layout

GOOD_ITEM = {"text": "Who wrote it?", "labels": "Someone wrote it."}


def _write(root, obj, raw=None):
    path = root / "privacy" / "unlearn.json"
    path.write_text(raw if raw is not None else json.dumps(obj))
    return path


CASES = [
    ("not JSON", None, "{not json", "not valid JSON"),
    ("not an object", [GOOD_ITEM], None, "expected one JSON object"),
    ("no train", {"val": [GOOD_ITEM]}, None, "missing the 'train' list"),
    ("no val", {"train": [GOOD_ITEM]}, None, "missing the 'val' list"),
    ("empty list", {"train": [], "val": [GOOD_ITEM]}, None, "'train' is empty"),
    (
        "item without labels",
        {"train": [GOOD_ITEM, {"text": "q?"}], "val": [{"text": "x?", "labels": "y."}]},
        None,
        "train item 1: missing 'labels'",
    ),
    ("item without text", {"train": [GOOD_ITEM], "val": [{"labels": "y."}]}, None, "val item 0: missing 'text'"),
    (
        "non-string",
        {"train": [{"text": 3, "labels": "a"}], "val": [GOOD_ITEM]},
        None,
        "train item 0: 'text' must be a string",
    ),
    (
        "empty string",
        {"train": [{"text": "q?", "labels": "  "}], "val": [GOOD_ITEM]},
        None,
        "train item 0: 'labels' is empty",
    ),
    ("item not an object", {"train": ["q?"], "val": [GOOD_ITEM]}, None, "train item 0: expected an object"),
    (
        "train/val overlap",
        {"train": [GOOD_ITEM], "val": [dict(GOOD_ITEM)]},
        None,
        "val item 0 repeats a train question",
    ),
]


@pytest.mark.parametrize("name,obj,raw,message", CASES, ids=[c[0] for c in CASES])
def test_bad_data_gives_one_line_and_exit_2(tmp_path, capsys, name, obj, raw, message):
    export_hub_layout(0, tmp_path)
    path = _write(tmp_path, obj, raw)
    code = main(["data", "--set", "data.source=local", "--set", f"data.path={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1, err  # one line, no traceback
    assert message in err and str(path) in err


def test_missing_file(tmp_path, capsys):
    export_hub_layout(0, tmp_path)
    (tmp_path / "copyright" / "retention.json").unlink()
    code = main(["data", "--set", "data.source=local", "--set", f"data.path={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and "copyright/retention.json: file not found" in err and err.count("\n") == 1
