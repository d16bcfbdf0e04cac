"""Two CPU processes (gloo, torchrun) give the single-process results: same loss curve, same final LoRA weights,
same localization statistics, with per-device batch x accumulation x processes kept at the configured batch."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from knowundo.distributed import per_process_batch
from knowundo.errors import KnowUndoError
from tests.conftest import MICRO, sets

pytestmark = pytest.mark.slow  # subprocesses / torchrun

SHORT = [
    *MICRO,
    "unlearn.epochs=1",
    "unlearn.batch_size=4",
    "unlearn.grad_accum=4",
    "unlearn.save_steps=0",
    "localize.copies=2",
    "localize.selection=top_k",
    "localize.top_k=4",
]


def _knowundo(argv, processes, *extra):
    launcher = (
        [sys.executable, "-m", "knowundo.cli"]
        if processes == 1
        else [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            "-m",
            "knowundo.cli",
        ]
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*launcher, *argv, *sets(*SHORT, *extra)], capture_output=True, text=True, timeout=900, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_effective_batch_is_kept_whatever_the_process_count():
    assert per_process_batch(4, 4, 1) == (4, 4)
    assert per_process_batch(4, 4, 2) == (4, 2)
    assert per_process_batch(4, 1, 2) == (2, 1)
    assert per_process_batch(1, 16, 8) == (1, 2)
    with pytest.raises(KnowUndoError, match="cannot be split over 3 processes"):
        per_process_batch(4, 4, 3)


@pytest.fixture(scope="module")
def runs(finetuned_privacy, tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    for processes in (1, 2):
        out = root / f"p{processes}"
        _knowundo(
            ["localize", "--domain", "privacy", "--finetuned", str(finetuned_privacy), "--out", str(out / "localize")],
            processes,
        )
        _knowundo(
            [
                "unlearn",
                "--domain",
                "privacy",
                "--method",
                "ga_gd",
                "--finetuned",
                str(finetuned_privacy),
                "--out",
                str(out / "ga_gd"),
            ],
            processes,
        )
    return root


def test_two_gloo_processes_reproduce_the_single_process_unlearning(runs):
    one, two = (json.loads((runs / f"p{n}" / "ga_gd" / "unlearn.json").read_text()) for n in (1, 2))
    assert one["batch"] == {"per_device": 4, "grad_accum": 4, "processes": 1, "effective": 16}
    assert two["batch"] == {"per_device": 4, "grad_accum": 2, "processes": 2, "effective": 16}
    assert one["steps"] == two["steps"] > 1
    losses_one = torch.tensor([e["loss"] for e in one["loss_history"]])
    losses_two = torch.tensor([e["loss"] for e in two["loss_history"]])
    assert torch.allclose(losses_one, losses_two, rtol=1e-4, atol=1e-5), (losses_one, losses_two)
    weights_one, weights_two = (
        load_file(runs / f"p{n}" / "ga_gd" / "adapter" / "adapter_model.safetensors") for n in (1, 2)
    )
    assert weights_one.keys() == weights_two.keys()
    for name in weights_one:
        assert torch.allclose(weights_one[name], weights_two[name], rtol=1e-4, atol=1e-6), name
    assert not (runs / "p2" / "ga_gd" / "adapter" / "training_args.bin").exists()


def test_localization_gradients_are_all_reduced(runs):
    one, two = (load_file(runs / f"p{n}" / "localize" / "gradients.safetensors") for n in (1, 2))
    for name in one:
        assert torch.allclose(one[name], two[name], rtol=1e-4, atol=1e-9), name
    regions = [json.loads((runs / f"p{n}" / "localize" / "region.json").read_text()) for n in (1, 2)]
    assert [p["selected"] for p in regions[0]["parameters"]] == [p["selected"] for p in regions[1]["parameters"]]


NAN_ON_RANK_1 = """
import os

import torch

from knowundo.methods import Method, register
from knowundo.methods.losses import weighted_nll

CALLS = []


@register
class NanOnRank1(Method):
    \"\"\"Gradient ascent whose loss turns NaN on the second process only, from its 7th micro-batch.\"\"\"

    name = "nan_on_rank_1"

    def forget_loss(self, forget, params):
        CALLS.append(1)
        loss = weighted_nll(forget)
        return loss * torch.nan if os.environ.get("RANK") == "1" and len(CALLS) > 6 else loss
"""


def test_a_non_finite_loss_on_one_process_stops_every_process_at_the_same_step(finetuned_privacy, tmp_path):
    plugin = tmp_path / "nan_method.py"
    plugin.write_text(NAN_ON_RANK_1)
    out = tmp_path / "nan"
    _knowundo(
        [
            "unlearn",
            "--domain",
            "privacy",
            "--method",
            "nan_on_rank_1",
            "--finetuned",
            str(finetuned_privacy),
            "--out",
            str(out),
        ],
        2,
        f"plugins=[{plugin}]",
    )  # returns at all (no process left waiting), exit 0
    record = json.loads((out / "unlearn.json").read_text())  # written by process 0, whose own loss was finite
    assert record["stopped_early"]["step"] == 3  # 6 good micro-batches = 3 optimizer steps of 2 per process
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
