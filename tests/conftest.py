"""Shared fixtures: every test runs offline, on a micro version of the tiny default (one pretraining epoch, two
fine-tuning epochs) so that the suite stays fast. The models knowundo builds or converts (the micro tiny base, the
SmolLM2 conversion) are cached across sessions in the user's model cache (``KNOWUNDO_CACHE``, default
``~/.cache/knowundo``): each is keyed by its settings and written atomically, so that concurrent sessions share
it safely; the datasets and Hub caches are per session."""

from __future__ import annotations

import os
import tempfile

import pytest

# Set before anything imports datasets/transformers (they read these at import time).
_CACHES = tempfile.mkdtemp(prefix="knowundo-test-caches-")
os.environ.setdefault("KNOWUNDO_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "knowundo"))
os.environ["HF_DATASETS_CACHE"] = os.path.join(_CACHES, "datasets")
os.environ["HF_HOME"] = os.path.join(_CACHES, "hf")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

# one quantization scheme: the others (NF4 among them) are tested in test_quantize; a quarter of the general set
# replayed (the preset's whole set, distilled from the base, costs a base forward pass on every replayed item); no
# system-prompted fine-tune items (their longer sequences; test_finetune covers them, the slow tests use the preset's);
# no floor of unlearning steps (the preset's 20 would make each test's one short epoch 20 steps; test_unlearn tests it);
# the adversarial probes on 16 items per split (test_probes builds them on every item)
MICRO = [
    "tiny.pretrain_epochs=1",
    "finetune.epochs=2",
    "finetune.general_replay=0.25",
    "finetune.system_prompt_share=0",
    "attack.quantize=[int4-g64]",
    "unlearn.min_steps=0",
    "attack.probe_items=16",
]


def sets(*overrides: str) -> list[str]:
    """``--set`` arguments for the CLI from ``section.key=value`` strings."""
    return [arg for o in overrides for arg in ("--set", o)]


def pytest_configure(config):
    """The dependencies' known, harmless warnings silenced by message, as the command line does (also while
    collecting, when libraries are imported); any other warning shows."""
    from knowundo.known_warnings import KNOWN

    for message, category, _ in KNOWN:
        config.addinivalue_line("filterwarnings", f"ignore:{message}:{category.__name__}")


@pytest.fixture(scope="session", autouse=True)
def _remove_caches():
    yield
    import shutil

    shutil.rmtree(_CACHES, ignore_errors=True)


@pytest.fixture(scope="session")
def micro_config():
    from knowundo.config import load_config

    return lambda *extra: load_config("tiny", overrides=[*MICRO, *extra])


@pytest.fixture(scope="session")
def micro_base(micro_config):
    """The micro tiny base, built once per session (the explicit step every command takes first)."""
    from knowundo.models.load import prepare_base

    prepare_base(micro_config(), progress=False)


@pytest.fixture(scope="session")
def tiny_model(micro_config, micro_base):
    """(model, tokenizer) of the micro tiny base."""
    from knowundo.models.load import load_base

    return load_base(micro_config())


@pytest.fixture(scope="session")
def finetuned_privacy(micro_config, micro_base, tmp_path_factory):
    """Directory of a micro fine-tune on the privacy domain (adapter + finetune.json)."""
    from knowundo.finetune import finetune

    out = tmp_path_factory.mktemp("ft") / "privacy"
    finetune(micro_config(), "privacy", out, progress=False)
    return out


RUN = [
    *MICRO,
    "eval.prompts=none",
    "eval.max_new_tokens=8",
    "eval.curves=true",
    "eval.general_mc=false",
    "unlearn.epochs=1",
    "unlearn.batch_size=8",
    "unlearn.grad_accum=2",
    "unlearn.save_steps=4",
    "localize.copies=1",
    "finetune.save_steps=20",
    "attack.relearn_steps=4",
]


def run_command(out, *extra):
    """`knowundo run` on the micro configuration: privacy, ga and memflex."""
    return ["run", "--out", str(out), "--domains", "privacy", "--methods", "ga,memflex", "--quiet", *sets(*RUN), *extra]


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, micro_base):
    """An uninterrupted micro `knowundo run` (the pipeline and provenance tests read it)."""
    from knowundo.cli import main

    out = tmp_path_factory.mktemp("pipeline") / "run"
    assert main(run_command(out)) == 0
    return out
