"""docs/extending.md runs as written, and a method or a metric is one file: a throw-away method and a
throw-away metric, registered from temporary files, go through `knowundo unlearn`, `knowundo eval` and the
report without any other file edited."""

import json
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

from knowundo.cli import main
from knowundo.evaluate.metric import METRICS, metrics
from knowundo.methods import METHODS, method_names
from tests.conftest import MICRO, sets

ROOT = Path(__file__).resolve().parents[1]
FAST = [
    *MICRO,
    "eval.prompts=none",
    "eval.max_new_tokens=8",
    "eval.general_mc=false",
    "unlearn.epochs=1",
    "unlearn.batch_size=8",
    "unlearn.grad_accum=2",
    "unlearn.save_steps=0",
]


def _blocks(text: str) -> list[tuple[str, str]]:
    return re.findall(r"```(\w+)\n(.*?)```", text, re.S)


@pytest.fixture
def registries():
    """Methods, metrics and plugin modules a test registers are gone afterwards."""
    method_names(), metrics()  # the built-in ones are registered before the snapshot
    before = (dict(METHODS), dict(METRICS), set(sys.modules))
    yield
    for registry, saved in zip((METHODS, METRICS), before):
        registry.clear()
        registry.update(saved)
    for name in set(sys.modules) - before[2]:
        if name.startswith("knowundo_plugin_"):
            del sys.modules[name]


@pytest.mark.slow  # several whole runs, a Qwen2-shaped model among them (seconds each, like the family matrix)
def test_docs_extending_examples_run_as_written(micro_base, tmp_path, monkeypatch, capsys, registries):
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "docs" / "extending.md").read_text()
    for language, body in _blocks(text):
        if language == "python":
            name = re.match(r"# file: (\S+)", body)
            assert name, f"every python block names its file: {body[:60]!r}"
            Path(name[1]).write_text(body)
            continue
        for line in body.strip().splitlines():
            argv = shlex.split(line)
            if argv[0] == "python":
                runpy.run_path(argv[1], run_name="__main__")
            else:
                assert argv[0] == "knowundo", line
                assert main([*argv[1:], *(sets(*FAST) if argv[1] not in ("report",) else [])]) == 0, line
    out = capsys.readouterr().out
    # the method ran with its parameter, the metric reached the report, the dataset and the model loaded
    record = json.loads(Path("runs/ext/capped_ga/unlearn.json").read_text())
    assert record["method"] == "capped_ga" and record["method_args"] == {"forget_weight": -1.0, "cap": 4.0}
    table = Path("runs/ext/report/table.md").read_text()
    assert "UL length" in table and "| vanilla |" in table and "| capped_ga |" in table
    assert "privacy   unlearn   train     2 items" in out
    record = json.loads(Path("runs/qwen2/finetune/finetune.json").read_text())
    assert record["items"] == 800 + record["general_replayed"] and record["general_replayed"] > 0


THROWAWAY_METHOD = '''
from dataclasses import dataclass

from knowundo.methods import ForgetParams, Method, register
from knowundo.methods.losses import weighted_nll

SEEN = []


@dataclass
class Params(ForgetParams):
    scale: float = 1.0


@register
class Throwaway(Method):
    """Scaled gradient ascent (a test method)."""

    name = "throwaway"
    Params = Params

    def forget_loss(self, forget, params):
        SEEN.append(params.scale)
        return params.scale * weighted_nll(forget)
'''

THROWAWAY_METRIC = """
from knowundo.evaluate.metric import Column, SplitMetric, register_metric

register_metric(SplitMetric(
    "answer_tokens", reduce=lambda records, scope: {"answer_tokens": sum(r["answer_tokens"] for r in records)},
    columns=(Column("unlearn_answer_tokens", "UL tokens", ("unlearn", "answer_tokens"), None, fmt="fraction",
                    position=150, doc="answer tokens scored on the unlearn split"),)))
"""


def test_a_throwaway_method_and_metric_need_no_other_file(finetuned_privacy, tmp_path, capsys, registries):
    (tmp_path / "throwaway_method.py").write_text(THROWAWAY_METHOD)
    (tmp_path / "throwaway_metric.py").write_text(THROWAWAY_METRIC)
    plugins = f"plugins=[{tmp_path / 'throwaway_method.py'},{tmp_path / 'throwaway_metric.py'}]"
    run = tmp_path / "results"
    assert (
        main(
            [
                "unlearn",
                "--domain",
                "privacy",
                "--method",
                "throwaway",
                "--finetuned",
                str(finetuned_privacy),
                "--out",
                str(run / "throwaway"),
                *sets(*FAST, plugins, "unlearn.method_args.throwaway.scale=0.5"),
            ]
        )
        == 0
    )
    assert json.loads((run / "throwaway" / "unlearn.json").read_text())["method_args"]["scale"] == 0.5
    module = next(
        m for name, m in list(sys.modules.items()) if name.startswith("knowundo_plugin_") and "Throwaway" in vars(m)
    )
    assert module.SEEN and set(module.SEEN) == {0.5}  # the setting reached the loss
    assert (
        main(
            [
                "eval",
                "--domain",
                "privacy",
                "--adapter",
                str(run / "throwaway" / "adapter"),
                "--out",
                str(run / "eval" / "throwaway.json"),
                *sets(*FAST, plugins),
            ]
        )
        == 0
    )
    result = json.loads((run / "eval" / "throwaway.json").read_text())
    expected = sum(r["answer_tokens"] for r in result["prompts"]["none"]["unlearn"]["per_item"])
    assert result["prompts"]["none"]["unlearn"]["answer_tokens"] == expected
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    table = (run / "report" / "table.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| Method"))
    assert header.split(" | ")[:3] == ["| Method", "UL Succ ↑", "UL PPL ↑"] and "UL tokens" in header
    row = next(line for line in table.splitlines() if line.startswith("| throwaway |"))
    assert f"{expected:.2f}" in row
    # a wrong parameter type is one line and exit code 2
    code = main(
        [
            "unlearn",
            "--domain",
            "privacy",
            "--method",
            "throwaway",
            "--finetuned",
            str(finetuned_privacy),
            "--out",
            str(run / "bad"),
            *sets(*FAST, plugins, "unlearn.method_args.throwaway.scale=lots"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "expects float" in err and err.count("\n") == 1 and not (run / "bad").exists()


def test_methods_command_lists_every_registered_method_with_its_needs(capsys):
    assert main(["methods", "--set", "unlearn.method_args.npo.beta=0.3"]) == 0
    out = capsys.readouterr().out
    for name in method_names():
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    npo = out.split("\nnpo ")[1].split("\n")[1]
    assert "retain data" in npo and "reference outputs (forget)" in npo and "beta=0.3" in npo
    rmu = out.split("\nrmu ")[1].split("\n")[1]
    assert "a region of its own" in rmu and "hidden states" in rmu
