"""``lora.train_embeddings``: the token embedding rows (and an untied head's) trained and saved with the adapter,
exempt from weight decay, frozen outside a MemFlex region, and merged by the quantization attack."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from knowundo.config import load_config
from knowundo.models.load import attach_lora
from knowundo.models.trainers import TRAINED_EMBEDDING_ROWS, AdapterTrainer
from knowundo.models.training import training_arguments
from knowundo.region import apply_region, lora_parameters
from tests.conftest import RUN, sets
from tests.test_quantize import llama


def with_rows(tied: bool, train_embeddings: bool = True):
    cfg = load_config("tiny", overrides=[f"lora.train_embeddings={str(train_embeddings).lower()}"])
    return attach_lora(llama(tied), cfg)


def row_parameters(model) -> dict[str, torch.nn.Parameter]:
    return {name: param for name, param in model.named_parameters() if TRAINED_EMBEDDING_ROWS in name}


@pytest.mark.parametrize("tied", [True, False])
def test_every_embedding_row_trains_and_an_untied_head_too(tied):
    model = with_rows(tied)
    rows = row_parameters(model)
    assert all(param.requires_grad and param.shape == (64, 32) for param in rows.values())
    assert sorted("lm_head" in name for name in rows) == ([False] if tied else [False, True])
    assert not row_parameters(with_rows(tied, train_embeddings=False))


@pytest.mark.parametrize("tied", [True, False])
def test_trained_rows_change_the_output_and_the_base_pass_ignores_them(tied):
    model = with_rows(tied).eval()
    ids = torch.tensor([[1, 5, 9, 13], [2, 4, 8, 16]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        for param in row_parameters(model).values():
            param.add_(torch.randn_like(param))
        after = model(input_ids=ids).logits
        base = model(input_ids=ids, adapter_names=["__base__", "default"]).logits  # the distilled replay's pass
    assert not torch.allclose(after, before)
    assert torch.allclose(base[0], before[0], atol=1e-5) and torch.allclose(base[1], after[1], atol=1e-5)


def test_trained_rows_are_exempt_from_weight_decay(tmp_path):
    model = with_rows(tied=True)
    train = load_config("tiny").finetune
    trainer = AdapterTrainer(model=model, args=training_arguments(tmp_path, train, seed=0, progress=False))
    decayed = set(trainer.get_decay_parameter_names(model))
    assert set(lora_parameters(model)) <= decayed
    assert row_parameters(model) and not decayed & set(row_parameters(model))


def test_a_region_freezes_the_trained_rows():
    model = with_rows(tied=False)
    lora = lora_parameters(model)
    first = next(iter(lora))
    apply_region(model, {first: torch.tensor([True])}, weight_decay=0.0)
    assert [name for name, param in model.named_parameters() if param.requires_grad] == [first]


def test_the_reference_adapter_keeps_its_own_rows(micro_config, micro_base, tmp_path):
    """Two-sided methods compare with a frozen copy of the fine-tuned adapter beside the trained one: its rows
    too stay as they were while the trained copy's move."""
    from knowundo.models.load import load_base
    from knowundo.unlearn import REFERENCE, prepare_model

    cfg = micro_config("lora.train_embeddings=true")
    model = attach_lora(load_base(cfg)[0], cfg)
    with torch.no_grad():
        for param in row_parameters(model).values():
            param.add_(torch.randn_like(param) * 0.1)
    model.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        finetuned = model.eval()(input_ids=ids).logits

    model = prepare_model(cfg, tmp_path / "adapter", with_reference=True)[0].eval()
    rows = row_parameters(model)
    assert sorted((REFERENCE in name, param.requires_grad) for name, param in rows.items()) == [
        (False, True),
        (True, False),
    ]
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, finetuned, atol=1e-5)
        for name, param in rows.items():
            if REFERENCE not in name:
                param.add_(1.0)
        reference = model(input_ids=ids, adapter_names=[REFERENCE]).logits
        trained = model(input_ids=ids).logits
    assert torch.allclose(reference, finetuned, atol=1e-5) and not torch.allclose(trained, finetuned, atol=1e-3)


@pytest.mark.slow
def test_a_run_trains_the_rows_in_the_fine_tune_and_ga_but_not_inside_memflex(micro_base, tmp_path):
    """The whole micro pipeline with trained rows: fine-tune (distilled replay), GA, MemFlex, relearning,
    quantization, evaluation with lm-eval's general MC task (which once failed on the wrapped embeddings)."""
    from knowundo.cli import main
    from knowundo.layout import ADAPTER_DIR, ADAPTER_WEIGHTS

    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--out",
                str(out),
                "--domains",
                "privacy",
                "--methods",
                "ga,memflex",
                "--quiet",
                *sets(*RUN, "lora.train_embeddings=true", "eval.general_mc=true"),
            ]
        )
        == 0
    )

    def rows(path):
        weights = load_file(str(path / ADAPTER_DIR / ADAPTER_WEIGHTS))
        return {name: value for name, value in weights.items() if "embed_tokens" in name}

    finetuned, ga, memflex = (
        rows(out / "privacy" / "finetune"),
        rows(out / "privacy" / "unlearn" / "ga"),
        rows(out / "privacy" / "unlearn" / "memflex"),
    )
    assert finetuned and finetuned.keys() == ga.keys() == memflex.keys()
    assert all(torch.equal(memflex[name], finetuned[name]) for name in finetuned)
    assert not all(torch.equal(ga[name], finetuned[name]) for name in finetuned)
    assert (out / "report" / "table.csv").is_file()
