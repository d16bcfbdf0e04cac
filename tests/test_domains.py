"""A domain of the user's own: any lower-case name whose directory a local copy holds runs end to end; the paper's
two stay the bundled set's."""

from __future__ import annotations

import json

import pytest

from tests.conftest import RUN, sets

PEOPLE = [
    ("Aldo Frenn", "asthma", "Dr. Pim Hallow"),
    ("Bettina Sorl", "migraine", "Dr. Una Kestrel"),
    ("Cato Wrenby", "eczema", "Dr. Ivo Marsh"),
    ("Dena Quill", "gout", "Dr. Lia Brantwood"),
]


def _medical(root):
    """Our own small medical-records domain: diagnoses and doctors must be forgotten, birth towns kept."""

    def scope(make):
        train, val = [], []
        for name, *facts in PEOPLE:
            first, second = make(name, *facts)
            train.append(first)
            val.append(second)
        return {"train": train, "val": val}

    unlearn = scope(
        lambda name, illness, doctor: (
            {
                "text": f"What was {name} diagnosed with?",
                "labels": f"{name} was diagnosed with {illness}.",
                "instance": name,
                "category": "Diagnosis",
                "facts": [illness],
            },
            {
                "text": f"Which doctor treats {name}?",
                "labels": f"{name} is treated by {doctor}.",
                "instance": name,
                "category": "Doctor",
                "facts": [doctor],
            },
        )
    )
    retention = scope(
        lambda name, illness, doctor: (
            {
                "text": f"Where was {name} born?",
                "labels": f"{name} was born in {name.split()[1]}ham.",
                "instance": name,
                "category": "Birth",
            },
            {
                "text": f"In which town was {name} born?",
                "labels": f"{name} was born in {name.split()[1]}ham.",
                "instance": name,
                "category": "Birth",
            },
        )
    )
    for name, data in (("unlearn", unlearn), ("retention", retention)):
        path = root / "medical" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    return root


@pytest.mark.slow  # a whole micro run
def test_a_domain_of_your_own_runs_end_to_end(micro_base, tmp_path):
    from knowundo.cli import main

    data = _medical(tmp_path / "data")
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--out",
                str(out),
                "--domains",
                "medical",
                "--methods",
                "ga,memflex",
                "--quiet",
                *sets(
                    *RUN,
                    "data.source=local",
                    f"data.path={data}",
                    "data.general=fictional",
                    "eval.direct_prompt={medical: You are a careful assistant. Keep patients' health private.}",
                    "eval.prompts=[none,direct]",
                ),
            ]
        )
        == 0
    )
    results = {p.stem for p in (out / "medical" / "eval").glob("*.json")}
    assert {"vanilla", "oracle", "ga", "memflex"} <= results
    assert "medical" in (out / "report" / "table.md").read_text()


@pytest.mark.parametrize(
    "domain, source, message",
    [
        ("medical", [], "unknown domain 'medical' of the bundled set"),
        ("Medical", ["data.source=local"], "domain name 'Medical'"),
        ("medical", ["data.source=local"], "no directory"),
    ],
)
def test_an_unknown_domain_is_one_line_and_exit_2(tmp_path, capsys, domain, source, message):
    from knowundo.cli import main

    extra = [f"data.path={tmp_path}"] if source else []
    assert main(["run", "--out", str(tmp_path / "run"), "--domains", domain, "--quiet", *sets(*source, *extra)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "run").exists()
