"""Rows as Ray tasks (``run.executor: ray``) on a local cluster: the same stages, keys and results as a serial run,
and a driver killed mid-run resumes where it stopped."""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from knowundo.cli import main
from tests.conftest import run_command, sets


def _values(out, label: str) -> dict:
    """Every number of a row's evaluation but its timings and provenance."""
    result = json.loads((out / "privacy" / "eval" / f"{label}.json").read_text())
    return {"prompts": result["prompts"], "general": result.get("general"), "key": result["meta"]["key"]}


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def test_rows_as_ray_tasks_give_the_serial_runs_results(reference_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(reference_run, out)
    for label in ("ga", "memflex"):  # the rows again; the fine-tune, oracle and region stay
        shutil.rmtree(out / "privacy" / "unlearn" / label)
        (out / "privacy" / "eval" / f"{label}.json").unlink()
    ray = sets("run.executor=ray", f"run.ray_cpus={_threads()}")  # the serial run's threads: the same sums
    assert main(run_command(out, *ray)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("[all] 2 rows as Ray tasks") for line in lines)
    trained = [line for line in lines if line.startswith("[privacy] unlearn")]
    assert len(trained) == 2 and all(" cached " not in line for line in trained)
    assert any(line.startswith("[privacy] finetune") and " cached " in line for line in lines)
    for label in ("ga", "memflex"):
        assert _values(out, label) == _values(reference_run, label)
    assert (out / "report" / "table.md").read_text() == (reference_run / "report" / "table.md").read_text()


def test_a_ray_setting_the_cluster_cannot_serve_stops_with_one_line(reference_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(reference_run, out)
    shutil.rmtree(out / "privacy" / "unlearn" / "ga")
    assert main(run_command(out, *sets("run.executor=ray", "run.ray_cpus=4096"))) == 2
    err = capsys.readouterr().err.strip()
    assert "run.ray_cpus=4096" in err and len(err.splitlines()) == 1
    assert main(run_command(out, *sets("run.executor=threads"))) == 2
    assert "run.executor must be one of serial, ray" in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_ray_driver_resumes(tmp_path, micro_base):
    """The driver is killed while its tasks train; the same command then finishes, redoing only what had not
    finished, and every row is evaluated."""
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "knowundo.cli",
        *run_command(out, "--methods", "ga,ga_gd,npo,memflex", *sets("run.executor=ray", "run.ray_cpus=1")),
    ]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    log = out / "stages.log"
    rows = ("ga", "ga_gd", "npo", "memflex")
    while time.monotonic() < deadline:  # killed once the first row has come back (others are training)
        text = log.read_text() if log.is_file() else ""
        if any(
            line.startswith("[privacy] eval") and any(f" {row}: " in line for row in rows) for line in text.splitlines()
        ):
            break
        if driver.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {driver.stdout.read()[-2000:]}")
        time.sleep(0.5)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    finished = {p.parent.name for p in (out / "privacy" / "unlearn").glob("*/unlearn.json")}
    assert finished and len(finished) < 4
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    lines = again.stdout.splitlines()
    cached = {
        line.split()[3].rstrip(":") for line in lines if line.startswith("[privacy] unlearn") and " cached " in line
    }
    assert finished <= cached
    for label in rows:
        assert (out / "privacy" / "eval" / f"{label}.json").is_file()
