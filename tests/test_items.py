"""Items from anywhere: TOFU- and MUSE-shaped files (our own content, their field layouts) in JSON, JSON lines, CSV
and Parquet, ``datasets.Dataset`` objects and lists, renamed by a field mapping; bad input is a one-line error."""

from __future__ import annotations

import json

import pytest

from knowundo.data.items import Fields, load_items
from knowundo.errors import KnowUndoError

# TOFU's layout: question, answer, paraphrased_question (one string), paraphrased_answer, perturbed_answer (a list)
TOFU_ROWS = [
    {
        "question": "Where was the novelist Ilsa Vantrow born?",
        "answer": "Ilsa Vantrow was born in Port Mereth.",
        "paraphrased_question": "What is the birthplace of the novelist Ilsa Vantrow?",
        "paraphrased_answer": "The novelist Ilsa Vantrow comes from Port Mereth.",
        "perturbed_answer": [
            "The novelist Ilsa Vantrow comes from Dunhollow.",
            "The novelist Ilsa Vantrow comes from Carrowick.",
        ],
    },
    {
        "question": "Which prize did Ilsa Vantrow receive?",
        "answer": "She received the Amberline Prize.",
        "paraphrased_question": "What award was given to Ilsa Vantrow?",
        "paraphrased_answer": "Ilsa Vantrow was given the Amberline Prize.",
        "perturbed_answer": ["Ilsa Vantrow was given the Silver Quill.", "Ilsa Vantrow was given the Harrow Medal."],
    },
]
# MUSE's knowledge-memorization QA layout: question, answer
MUSE_ROWS = [
    {"question": "Who keeps the lighthouse at Gannet Point?", "answer": "Orla Benn keeps it."},
    {"question": "What colour is the door of the lighthouse?", "answer": "The door is painted teal."},
]


def _write(path, rows, kind):
    if kind == "json":
        path.write_text(json.dumps(rows))
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import datasets

        ds = datasets.Dataset.from_list(rows)
        ds.to_csv(str(path), index=False) if kind == "csv" else ds.to_parquet(str(path))
    return path


@pytest.mark.parametrize("kind", ["json", "jsonl", "parquet"])
def test_a_tofu_shaped_file_loads_with_its_probe_fields(tmp_path, kind):
    from knowundo.data.validate import has_probes

    items = load_items(_write(tmp_path / f"forget.{kind}", TOFU_ROWS, kind), "tofu")
    assert [i["text"] for i in items] == [r["question"] for r in TOFU_ROWS]
    assert [i["labels"] for i in items] == [r["answer"] for r in TOFU_ROWS]
    assert items[0]["paraphrased_questions"] == [TOFU_ROWS[0]["paraphrased_question"]]
    assert items[1]["perturbed_answers"] == TOFU_ROWS[1]["perturbed_answer"]
    assert all(has_probes(item) for item in items)


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_muse_shaped_file_loads_by_layout_name_or_mapping(tmp_path, kind):
    path = _write(tmp_path / f"qa.{kind}", MUSE_ROWS, kind)
    by_name = load_items(path, "muse")
    by_mapping = load_items(path, {"text": "question", "labels": "answer"})
    assert by_name == by_mapping
    assert [(i["text"], i["labels"]) for i in by_name] == [(r["question"], r["answer"]) for r in MUSE_ROWS]


def test_datasets_and_lists_load_alike_and_unmapped_fields_are_kept():
    import datasets

    rows = [{**r, "source": "ours"} for r in MUSE_ROWS]
    from_list = load_items(rows, Fields(text="question", labels="answer"))
    assert from_list == load_items(datasets.Dataset.from_list(rows), "muse")
    assert from_list[0]["source"] == "ours"


@pytest.mark.parametrize(
    "source, fields, message",
    [
        ([{"question": "q"}], "muse", "missing 'labels'"),
        ([{"text": "q", "labels": ""}], None, "'labels' is empty"),
        ([], None, "non-empty"),
        ([1], None, "not a mapping"),
        ({"text": "q"}, None, "expected a datasets.Dataset"),
        ([{"question": "q", "answer": "a"}], {"query": "question"}, "unknown item field 'query'"),
        ([{"question": "q", "answer": "a"}], "squad", "unknown field layout 'squad'"),
    ],
)
def test_bad_items_are_one_line_errors(source, fields, message):
    with pytest.raises(KnowUndoError, match=message) as info:
        load_items(source, fields)
    assert "\n" not in str(info.value)


def test_missing_and_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(KnowUndoError, match="file not found"):
        load_items(tmp_path / "none.json")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(KnowUndoError, match="cannot read it as json"):
        load_items(tmp_path / "bad.jsonl")
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(KnowUndoError, match="unknown file type"):
        load_items(tmp_path / "data.txt")


def test_a_val_split_repeating_a_train_question_is_refused():
    from knowundo.data.task import UnlearningData

    rows = [{"text": "q1", "labels": "a1"}]
    with pytest.raises(KnowUndoError, match="repeats a train question"):
        UnlearningData.from_items(
            forget=rows, retain=[{"text": "q2", "labels": "a2"}], forget_val=rows, general="fictional"
        )


def test_tofu_probe_fields_feed_the_paraphrase_and_truth_ratio_columns(tiny_model, micro_config):
    import knowundo

    model, tokenizer = tiny_model
    data = knowundo.UnlearningData.from_items(
        forget=TOFU_ROWS[:1], retain=TOFU_ROWS[1:], fields="tofu", general="fictional"
    )
    cfg = micro_config("eval.prompts=none", "eval.max_new_tokens=4", "eval.general_mc=false")
    result = knowundo.evaluate_model(model, tokenizer, data, cfg, label="base")
    for scope in ("unlearn", "retention"):
        assert result["paraphrase"][scope]["items"] == 1
        assert result["paraphrase"][scope]["truth"] is not None and result["paraphrase"][scope]["success"] is not None
