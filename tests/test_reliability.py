"""Reliability and safety: bad input leaves nothing behind, writes are atomic under SIGKILL, torn checkpoints are
skipped, runs are deterministic, results carry their provenance, and nothing unsafe is ever unpickled."""

import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from knowundo.artifacts import StageOutput
from knowundo.cli import main
from tests.conftest import MICRO, sets

ROOT = Path(__file__).resolve().parents[1]
SHORT = [
    *MICRO,
    "unlearn.epochs=1",
    "unlearn.batch_size=8",
    "unlearn.grad_accum=2",
    "unlearn.save_steps=4",
    "eval.prompts=none",
    "eval.max_new_tokens=8",
]


def _not_a_causal_lm(tmp_path):
    model_dir = tmp_path / "vision-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"model_type": "vit"}))
    return str(model_dir)


BAD_INPUT = {
    "unknown method": (
        lambda t, ft: [
            "unlearn",
            "--domain",
            "privacy",
            "--method",
            "npoo",
            "--finetuned",
            ft,
            "--out",
            str(t / "out"),
        ],
        "unknown method 'npoo'",
    ),
    "unknown domain": (
        lambda t, ft: ["run", "--domains", "medical", "--out", str(t / "out")],
        "unknown domain 'medical'",
    ),
    "unknown preset": (lambda t, ft: ["run", "--preset", "llama3", "--out", str(t / "out")], "unknown preset"),
    "config key with did-you-mean": (
        lambda t, ft: ["run", "--set", "unlearn.lerning_rate=1", "--out", str(t / "out")],
        "did you mean 'unlearn.learning_rate'",
    ),
    "unknown run method": (
        lambda t, ft: ["run", "--methods", "ga,gradient_descent", "--out", str(t / "out")],
        "unknown method 'gradient_descent'",
    ),
    "method listed twice": (lambda t, ft: ["run", "--methods", "ga,ga", "--out", str(t / "out")], "twice"),
    "ood of a method without retain data": (
        lambda t, ft: ["run", "--methods", "ga_ood", "--out", str(t / "out")],
        "no out-of-distribution variant",
    ),
    "conflicting selection flags": (
        lambda t, ft: [
            "localize",
            "--domain",
            "privacy",
            "--finetuned",
            ft,
            "--mu",
            "0.9",
            "--top-k",
            "3",
            "--out",
            str(t / "out"),
        ],
        "choose one selection",
    ),
    "--general with a method without retain data": (
        lambda t, ft: [
            "unlearn",
            "--domain",
            "privacy",
            "--method",
            "ga",
            "--general",
            "--finetuned",
            ft,
            "--out",
            str(t / "out"),
        ],
        "--general",
    ),
    "unknown prompt variant": (
        lambda t, ft: [
            "eval",
            "--domain",
            "privacy",
            "--set",
            "eval.prompts=none,polite",
            "--out",
            str(t / "out" / "r.json"),
        ],
        "unknown prompt variant",
    ),
    "no prompt variant": (
        lambda t, ft: ["run", "--set", "eval.prompts=[]", "--out", str(t / "out")],
        "eval.prompts is empty",
    ),
    "unknown --force stage": (lambda t, ft: ["run", "--force", "training", "--out", str(t / "out")], "unknown stage"),
    "missing model path": (
        lambda t, ft: ["finetune", "--domain", "privacy", "--set", f"model.name={t / 'nope'}", "--out", str(t / "out")],
        "cannot load model",
    ),
    "not a causal LM": (
        lambda t, ft: [
            "finetune",
            "--domain",
            "privacy",
            "--set",
            f"model.name={_not_a_causal_lm(t)}",
            "--out",
            str(t / "out"),
        ],
        "not a causal language model",
    ),
    "method parameter with did-you-mean": (
        lambda t, ft: ["run", "--set", "unlearn.method_args.adversarial.topk=3", "--out", str(t / "out")],
        "did you mean 'unlearn.method_args.adversarial.top_k'",
    ),
    "method parameter of the wrong type": (
        lambda t, ft: ["run", "--set", "unlearn.method_args.adversarial.top_k=many", "--out", str(t / "out")],
        "expects int",
    ),
    "parameters of an unknown method": (
        lambda t, ft: ["run", "--set", "unlearn.method_args.npoo.beta=1", "--out", str(t / "out")],
        "unknown method 'npoo'",
    ),
    "per-method settings of an unknown method": (
        lambda t, ft: ["run", "--set", "unlearn.per_method.gaa={epochs: 1}", "--out", str(t / "out")],
        "unknown method 'gaa'",
    ),
    "unknown region in a label": (
        lambda t, ft: ["run", "--methods", "ga@rows", "--out", str(t / "out")],
        "unknown region 'rows'",
    ),
    "a localized method with a region label": (
        lambda t, ft: ["run", "--methods", "memflex@memflex", "--out", str(t / "out")],
        "trains inside its own region",
    ),
    "unknown plugin": (
        lambda t, ft: ["run", "--set", "plugins=[no_such_module_xyz]", "--out", str(t / "out")],
        "cannot import 'no_such_module_xyz'",
    ),
    "negative learning rate": (
        lambda t, ft: [
            "finetune",
            "--domain",
            "privacy",
            "--set",
            "finetune.learning_rate=-1",
            "--out",
            str(t / "out"),
        ],
        "finetune.learning_rate must be > 0",
    ),
    "zero epochs": (
        lambda t, ft: ["run", "--set", "unlearn.epochs=0", "--out", str(t / "out")],
        "unlearn.epochs must be > 0",
    ),
    "fraction out of range": (
        lambda t, ft: ["run", "--set", "localize.quantile=1.5", "--out", str(t / "out")],
        "localize.quantile must be in (0, 1)",
    ),
    "unknown scheduler": (
        lambda t, ft: [
            "unlearn",
            "--domain",
            "privacy",
            "--method",
            "ga",
            "--finetuned",
            ft,
            "--set",
            "unlearn.scheduler=cosinus",
            "--out",
            str(t / "out"),
        ],
        "unlearn.scheduler must be one of",
    ),
    "model directory that does not exist": (
        lambda t, ft: [
            "finetune",
            "--domain",
            "privacy",
            "--set",
            f"model.name={t / 'models' / 'mine'}",
            "--out",
            str(t / "out"),
        ],
        "no such directory",
    ),
    "adapter directory without safetensors": (
        lambda t, ft: ["eval", "--domain", "privacy", "--adapter", str(t), "--out", str(t / "out" / "r.json")],
        "no LoRA adapter",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, finetuned_privacy, tmp_path, capsys):
    (tmp_path / "adapter_config.json").write_text("{}")  # for the adapter case: config without weights
    argv, message = BAD_INPUT[case]
    code = main([*argv(tmp_path, str(finetuned_privacy)), *sets(*MICRO)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_run_directory_of_other_settings_is_refused_without_touching_it(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"settings_key": "0123456789abcdef"}))
    before = sorted(p.name for p in out.iterdir())
    assert main(["run", "--out", str(out)]) == 2
    assert "holds a run of other settings" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "thesis.tex").write_text("mine")
    assert main(["run", "--out", str(tmp_path / "other")]) == 2
    assert "not a knowundo run directory" in capsys.readouterr().err


WRITER = textwrap.dedent("""
    import sys
    from knowundo.artifacts import write_json
    target = sys.argv[1]
    version = 0
    print("ready", flush=True)
    while True:
        version += 1
        write_json(target, {"version": version, "payload": [version] * 200_000, "complete": True})
""")


@pytest.mark.slow
def test_a_writer_killed_mid_write_leaves_the_old_or_the_new_file_never_a_torn_one(tmp_path):
    target = tmp_path / "result.json"
    for attempt in range(6):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(0.4 + 0.13 * attempt)  # land at different points of a write
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        data = json.loads(target.read_text())  # parses: never torn
        assert data["complete"] and data["payload"] == [data["version"]] * 200_000


def test_stale_temporaries_of_a_killed_writer_are_removed_on_the_next_start(tmp_path):
    stage = StageOutput(tmp_path / "out", "key", "record.json")
    work = stage.begin()
    (work / "checkpoints").mkdir()
    stale = [work / ".record.json.x1y2.tmp", work / "checkpoints" / ".trainer_state.json.abc.tmp"]
    for path in stale:
        path.write_text("half written")
    (work / "notes.tmp").write_text("not ours: no leading dot")
    assert stage.begin() == work  # the same key resumes: the directory is kept, the torn temporaries go
    assert not any(path.exists() for path in stale) and (work / "notes.tmp").exists()


def test_a_torn_checkpoint_is_discarded_and_the_previous_complete_one_resumed(tmp_path):
    stage = StageOutput(tmp_path / "out", "key", "record.json")
    work = stage.begin()
    for step, state in ((4, '{"global_step": 4}'), (8, '{"global_st')):  # 8: killed while writing its state
        (work / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
        (work / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (work / "checkpoints" / "checkpoint-12").mkdir()  # killed before anything was written
    assert stage.last_checkpoint() == str(work / "checkpoints" / "checkpoint-4")
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["checkpoint-4"]


@pytest.mark.slow  # two whole unlearning runs and evaluations
def test_same_seed_same_numbers(finetuned_privacy, tmp_path):
    from knowundo.artifacts import file_hash
    from knowundo.config import load_config
    from knowundo.evaluate.run import evaluate_checkpoint
    from knowundo.unlearn import unlearn

    cfg = load_config("tiny", overrides=[*SHORT, "eval.general_mc=false", "eval.curves=false"])
    results = []
    for name in ("first", "second"):
        unlearn(cfg, "privacy", "ga_kl", finetuned_privacy / "adapter", tmp_path / name, progress=False)
        result = evaluate_checkpoint(cfg, "privacy", tmp_path / name / "adapter")
        results.append(
            (
                file_hash(tmp_path / name / "adapter" / "adapter_model.safetensors"),
                {k: v for k, v in result.items() if k != "meta"},
            )
        )
    assert results[0] == results[1]


def test_every_result_file_states_seed_data_hash_and_versions(reference_run):
    out = reference_run
    files = {
        "run.json": ("seed", "data_hashes", "versions"),
        "privacy/finetune/finetune.json": ("seed", "data_hash", "versions"),
        "privacy/localize/gradients.json": ("seed", "data_hash", "versions"),
        "privacy/localize/region.json": ("seed", "data_hash", "versions"),
        "privacy/unlearn/ga/unlearn.json": ("seed", "data_hash", "versions"),
        "report/table.json": ("seeds", "data_hashes", "versions"),
    }
    for name, keys in files.items():
        record = json.loads((out / name).read_text())
        assert all(record.get(k) for k in keys), (name, [k for k in keys if not record.get(k)])
    for name in ("vanilla", "ga", "memflex"):
        meta = json.loads((out / "privacy" / "eval" / f"{name}.json").read_text())["meta"]
        assert meta["seed"] == 42 and meta["data_hash"] and meta["versions"]["transformers"]


EXPLOIT = """
class Exploit:
    def __reduce__(self):
        return (open, ({marker!r}, "w"))
"""


def _crafted_pickle(target: Path, marker: Path) -> None:
    """A pickle that, if ever unpickled, creates ``marker`` (written by a subprocess: no pickle import here)."""
    code = (
        EXPLOIT.format(marker=str(marker))
        + f"import pickle; open({str(target)!r}, 'wb').write(pickle.dumps(Exploit()))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch, while refusing our crafted file
def test_a_crafted_pickle_is_never_unpickled(finetuned_privacy, tmp_path, capsys):
    import shutil

    marker = tmp_path / "pwned"
    # 1. an adapter directory that holds a pickled adapter_model.bin instead of safetensors
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    shutil.copy(finetuned_privacy / "adapter" / "adapter_config.json", adapter)
    _crafted_pickle(adapter / "adapter_model.bin", marker)
    assert main(["eval", "--domain", "privacy", "--adapter", str(adapter), *sets(*SHORT)]) == 2
    assert "no LoRA adapter" in capsys.readouterr().err
    # 2. a results directory with pickles beside real results: the report never opens them
    results = tmp_path / "results"
    results.mkdir()
    _crafted_pickle(results / "evil.json", marker)
    _crafted_pickle(results / "results.pkl", marker)
    assert main(["report", str(results)]) == 2  # nothing of ours there
    assert "no evaluation results" in capsys.readouterr().err
    # 3. a checkpoint to resume from whose optimizer state is a crafted pickle
    out = tmp_path / "unlearn"
    argv = [
        "unlearn",
        "--domain",
        "privacy",
        "--method",
        "ga",
        "--finetuned",
        str(finetuned_privacy),
        "--out",
        str(out),
        *sets(*SHORT),
    ]
    assert main(argv) == 0
    checkpoint = out / "checkpoints" / "checkpoint-4"
    partial = tmp_path / "unlearn.partial"
    shutil.copytree(out, partial)
    shutil.rmtree(out)
    (partial / "key").write_text(json.loads((partial / "unlearn.json").read_text())["key"])
    (partial / "unlearn.json").unlink()
    for name in ("checkpoint-8", "checkpoint-12", "checkpoint-16", "checkpoint-20"):
        shutil.rmtree(partial / "checkpoints" / name, ignore_errors=True)
    _crafted_pickle(partial / "checkpoints" / checkpoint.name / "optimizer.pt", marker)
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("knowundo: error")]
    assert len(errors) == 1 and "refused to load a checkpoint file" in errors[0], errors
    assert not marker.exists()


def test_the_source_never_unpickles():
    source = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.py"))
    assert not re.search(r"^\s*(import|from)\s+(pickle|dill|cloudpickle|joblib)\b", source, re.M)
    for call in re.findall(r"torch\.load\([^)]*\)", source):
        assert "weights_only=True" in call, call
    assert "trust_remote_code: bool = False" in (ROOT / "src" / "knowundo" / "config.py").read_text()
