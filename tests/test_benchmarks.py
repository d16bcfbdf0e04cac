"""The GPU benchmark script runs end to end on a CPU at a tiny shape (its numbers are only meaningful on a GPU)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocesses / torchrun

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_step_benchmark_runs_on_cpu_with_a_tiny_shape():
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu_step.py"),
            "--hidden",
            "64",
            "--intermediate",
            "128",
            "--layers",
            "2",
            "--heads",
            "4",
            "--vocab",
            "2048",
            "--seq",
            "32",
            "--accum",
            "2",
            "--steps",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {
        m.group(1): m.groups()[1:]
        for m in re.finditer(r"^(ga|ga_kl|memflex)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)%$", done.stdout, re.M)
    }
    assert set(rows) == {"ga", "ga_kl", "memflex"}, done.stdout
    for seconds, peak_gb, gflop, mfu in rows.values():
        assert float(seconds) > 0 and float(peak_gb) > 0 and float(gflop) > 0 and 0 < float(mfu) <= 100
    # FLOP accounting: ga_kl does 5 forward-equivalents per token, memflex 4, ga 2
    assert abs(float(rows["ga_kl"][2]) / float(rows["ga"][2]) - 2.5) < 0.01
    assert "measured matmul rate" in done.stdout


def test_eval_throughput_runs_on_cpu_with_a_tiny_shape():
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "eval_throughput.py"),
            "--hidden",
            "64",
            "--intermediate",
            "128",
            "--layers",
            "2",
            "--heads",
            "4",
            "--vocab",
            "2048",
            "--items",
            "8",
            "--new_tokens",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"teacher-forced batch +16: +[\d.]+ items/s", done.stdout)
    assert re.search(r"generation batch +1: +[\d.]+ new tokens/s", done.stdout)
    assert "generations identical across batch sizes: 8 of 8" in done.stdout  # float32 on a CPU: no ties


def test_gpu_check_script_is_one_valid_bash_call():
    script = ROOT / "benchmarks" / "gpu_check.sh"
    assert script.stat().st_mode & 0o111  # executable
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    for part in (
        "-m knowundo.cli run --out",
        "--preset smollm2",
        "stage_devices.py",
        "gpu_step.py --methods ga,ga_kl,memflex",
        "eval_throughput.py",
        "zero3_step.py",
    ):
        assert part in text
    assert text.index("stage_devices.py") < text.index("gpu_step.py")  # the stages on CUDA come first


def test_stage_devices_fails_on_a_record_of_another_device(tmp_path, micro_config, finetuned_privacy):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finetuned_privacy, run / "privacy" / "finetune")
    script = [sys.executable, str(ROOT / "benchmarks" / "stage_devices.py"), str(run)]
    assert subprocess.run([*script, "cpu"], capture_output=True).returncode == 0
    failed = subprocess.run([*script, "cuda"], capture_output=True, text=True)
    assert failed.returncode == 1 and "privacy/finetune/finetune.json: cpu" in failed.stdout


def test_tokenizer_report_shows_other_text_splitting_into_shorter_pieces():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "tokenizer.py")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ratios = {
        m.group(1).strip(): float(m.group(2)) for m in re.finditer(r"^(.{34}) +([\d.]+) +[\d.]+%$", done.stdout, re.M)
    }
    assert len(ratios) == 3, done.stdout
    assert ratios["other English, accented names"] < ratios["bundled benchmark (trained on)"]
