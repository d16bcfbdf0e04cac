"""The quantization attack: the fake-quantization kernels against their definitions (and bitsandbytes' own NF4),
and ``quantized()`` against a model merged and quantized by hand, restored bit for bit afterwards."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from knowundo.attacks.quantize import (
    NF4_CODEBOOK,
    QuantScheme,
    nf4_path,
    parse_scheme,
    quantize_nf4,
    quantize_rtn,
    quantized,
)
from knowundo.config import AttackConfig
from knowundo.errors import KnowUndoError

CODE = torch.tensor(NF4_CODEBOOK)


def groups_of(weight: torch.Tensor, group: int) -> list[torch.Tensor]:
    """The input-feature groups of each row, the last one short."""
    return [chunk for row in weight for chunk in row.split(group)]


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("group", [64, 128])
def test_rtn_error_within_half_a_step_per_group(bits, group):
    torch.manual_seed(bits + group)
    weight = torch.randn(6, 200) * torch.logspace(-3, 1, 6).unsqueeze(1)  # 200 is no multiple of 64 or 128
    weight[2, :group] = 0.0  # a zero group
    out = quantize_rtn(weight, bits, group)
    assert out.shape == weight.shape and out.dtype == weight.dtype
    qmax = 2 ** (bits - 1) - 1
    for original, quant in zip(groups_of(weight, group), groups_of(out, group), strict=True):
        scale = original.abs().max() / qmax
        assert (quant - original).abs().max() <= scale / 2 * (1 + 1e-5) + 1e-12
    assert torch.equal(out[2, :group], torch.zeros(group))
    assert (out[2, group:] != 0).any()  # the rest of the row is still quantized on its own scale


@pytest.mark.parametrize("bits", [8, 4])
def test_rtn_keeps_representable_values_and_zeros(bits):
    qmax = 2 ** (bits - 1) - 1
    torch.manual_seed(bits)
    steps = torch.randint(-qmax, qmax + 1, (4, 100)).float()
    steps[:, ::64] = qmax  # each group's absmax is qmax steps: scale is exactly the step
    weight = steps * torch.tensor([2.0**-5, 2.0**-9, 1.0, 0.0]).unsqueeze(1)  # the last row all zero
    assert torch.equal(quantize_rtn(weight, bits, 64), weight)
    assert torch.equal(quantize_rtn(weight.bfloat16(), bits, 64), weight.bfloat16())


def test_rtn_is_coarser_with_fewer_bits():
    torch.manual_seed(0)
    weight = torch.randn(16, 256)
    error = {bits: (quantize_rtn(weight, bits, 64) - weight).abs().mean() for bits in (8, 4)}
    assert error[4] > 8 * error[8]


def test_nf4_values_are_codebook_entries_times_block_absmax():
    torch.manual_seed(1)
    weight = torch.randn(10, 90) * 0.02  # 900 values: 14 full blocks of 64 and a short one
    weight.view(-1)[128:192] = 0.0  # a zero block
    out = quantize_nf4(weight, 64)
    assert out.shape == weight.shape and out.dtype == weight.dtype
    for original, quant in zip(weight.flatten().split(64), out.flatten().split(64), strict=True):
        absmax = original.abs().max()
        candidates = CODE * absmax
        distance = (original.unsqueeze(1) - candidates).abs()
        nearest = candidates[distance.argmin(1)]
        assert torch.allclose(quant, nearest, rtol=0, atol=1e-7)  # every value is a codebook entry, the nearest
        largest_gap = (CODE[1:] - CODE[:-1]).max()
        assert (quant - original).abs().max() <= largest_gap / 2 * absmax + 1e-7
    assert torch.equal(out.flatten()[128:192], torch.zeros(64))


def test_nf4_codebook_is_bitsandbytes_own():
    functional = pytest.importorskip("bitsandbytes.functional")
    assert torch.equal(CODE, functional.get_4bit_type("nf4", device="cpu"))


def test_nf4_matches_bitsandbytes_kernels():
    functional = pytest.importorskip("bitsandbytes.functional")
    torch.manual_seed(2)
    weight = torch.randn(48, 100)
    for block in (64, 128):
        packed, state = functional.quantize_4bit(weight, blocksize=block, quant_type="nf4")
        assert torch.equal(quantize_nf4(weight, block), functional.dequantize_4bit(packed, state))


def test_nf4_path_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available: bitsandbytes may run")
    assert nf4_path(64) == "torch"


def test_parse_scheme():
    defaults = AttackConfig().quantize
    assert [parse_scheme(text).name for text in defaults] == defaults
    assert parse_scheme("int4-g64") == QuantScheme("rtn", 4, 64)
    assert parse_scheme("nf4-g64") == QuantScheme("nf4", 4, 64)
    for bad in ("int3-g64", "int8-g0", "fp4-g64", "nf8-g64", "int8", "int8-g-1", ""):
        with pytest.raises(KnowUndoError) as error:
            parse_scheme(bad)
        assert "\n" not in str(error.value)
    with pytest.raises(KnowUndoError):
        QuantScheme("rtn", 16, 64)


# --- quantized() on small models -------------------------------------------------------------------------------


def llama(tied: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            tie_word_embeddings=tied,
        )
    )


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4))


def with_lora(base: nn.Module, dropout: float = 0.0):
    """``base`` with an all-linear LoRA adapter whose B is non-zero, so that merging it changes the weights."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    model = get_peft_model(
        base,
        LoraConfig(
            r=4,
            lora_alpha=8,
            lora_dropout=dropout,
            target_modules="all-linear",
            fan_in_fan_out=base.config.model_type == "gpt2",
        ),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    return model.eval()


def reference(model, scheme: str) -> nn.Module:
    """The attack done by hand: merge and unload a copy (if it has an adapter), then quantize its linear layers
    (GPT-2's Conv1D transposed to (out, in)) except the head."""
    from transformers.pytorch_utils import Conv1D

    parsed = parse_scheme(scheme)

    def quantize(weight: torch.Tensor) -> torch.Tensor:
        if parsed.kind == "nf4":
            return quantize_nf4(weight, parsed.group_size)
        return quantize_rtn(weight, parsed.bits, parsed.group_size)

    merged = copy.deepcopy(model)
    merged = merged.merge_and_unload() if hasattr(merged, "merge_and_unload") else merged
    with torch.no_grad():
        for module in merged.modules():
            if module is merged.get_output_embeddings():
                continue
            if isinstance(module, nn.Linear):
                module.weight.copy_(quantize(module.weight))
            elif isinstance(module, Conv1D):
                module.weight.copy_(quantize(module.weight.t()).t())
    return merged


def snapshot(model) -> dict[str, tuple[torch.Tensor, bool]]:
    return {name: (param.detach().clone(), param.requires_grad) for name, param in model.named_parameters()}


def assert_unchanged(model, before) -> None:
    after = snapshot(model)
    assert after.keys() == before.keys()
    for name, (value, requires_grad) in before.items():
        assert torch.equal(after[name][0], value), name
        assert after[name][1] == requires_grad, name


IDS = torch.tensor([[1, 5, 9, 13, 17, 21, 25, 29], [2, 4, 8, 16, 32, 63, 0, 7]])


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.mark.parametrize("make", [llama, gpt2])
@pytest.mark.parametrize("scheme", ["int8-g128", "int4-g16", "nf4-g64"])
def test_quantized_is_the_merged_then_quantized_model(make, scheme):
    model = with_lora(make())
    before, plain = snapshot(model), logits(model)
    expected = logits(reference(model, scheme))
    head = model.get_base_model().get_output_embeddings().weight
    with quantized(model, scheme) as info:
        inside = logits(model)
        assert torch.equal(model.get_base_model().get_output_embeddings().weight, head)
    assert torch.allclose(inside, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(inside, plain, rtol=0, atol=1e-5)
    assert info["scheme"] == scheme and info["path"] == ("torch" if scheme.startswith("int") else nf4_path(64))
    assert info["layers"] == (14 if make is llama else 8)  # 7 linears per Llama layer, 4 Conv1D per GPT-2 block
    assert info["mean_abs_change"] > 0
    assert_unchanged(model, before)
    assert torch.equal(logits(model), plain)  # the adapter is active again


@pytest.mark.parametrize("tied", [True, False])
def test_quantized_merges_the_embedding_rows_the_adapter_trains(tied):
    """``lora.train_embeddings``: the trained rows are part of the model the attack quantizes (unquantized, as
    the embeddings and head are)."""
    from knowundo.config import load_config
    from knowundo.models.load import attach_lora

    model = attach_lora(llama(tied), load_config("tiny", overrides=["lora.train_embeddings=true"])).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                param.add_(torch.randn_like(param) * 0.05)
    before, plain = snapshot(model), logits(model)
    expected = logits(reference(model, "int8-g128"))
    with quantized(model, "int8-g128"):
        inside = logits(model)
    assert torch.allclose(inside, expected, rtol=0, atol=1e-5)
    assert_unchanged(model, before)
    assert torch.equal(logits(model), plain)


def test_quantized_ignores_lora_dropout_and_restores_an_inference_adapter(tmp_path):
    from peft import PeftModel

    with_lora(llama(), dropout=0.5).save_pretrained(tmp_path)
    model = PeftModel.from_pretrained(llama(), str(tmp_path))  # inference mode: nothing requires grad
    before = snapshot(model)
    expected = logits(reference(model.eval(), "int8-g64"))
    model.train()  # LoRA dropout active; Llama itself has none
    with quantized(model, "int8-g64"):
        first, second = logits(model), logits(model)
    assert torch.equal(first, second)
    assert torch.allclose(first, expected, rtol=0, atol=1e-5)
    assert_unchanged(model, before)


def test_quantized_restores_on_exception():
    model = with_lora(llama())
    before, plain = snapshot(model), logits(model)
    with pytest.raises(RuntimeError, match="boom"), quantized(model, "int4-g64"):
        raise RuntimeError("boom")
    assert_unchanged(model, before)
    assert torch.equal(logits(model), plain)


def test_quantized_plain_model():
    model = llama().eval()
    before, plain = snapshot(model), logits(model)
    expected = logits(reference(model, "nf4-g64"))
    with quantized(model, parse_scheme("nf4-g64")) as info:
        assert info["layers"] == 14
        assert torch.allclose(logits(model), expected, rtol=0, atol=1e-5)
    assert_unchanged(model, before)
    assert torch.equal(logits(model), plain)


def test_eight_bits_change_logits_little_and_four_bits_more():
    model = with_lora(llama())
    merged = logits(copy.deepcopy(model).merge_and_unload())
    change = {}
    for scheme in ("int8-g128", "int4-g128", "nf4-g64"):
        with quantized(model, scheme):
            change[scheme] = ((logits(model) - merged).norm() / merged.norm()).item()
    assert change["int8-g128"] < 0.02  # 0.007 on this model
    assert change["int4-g128"] > 5 * change["int8-g128"]  # about 20x (NF4: 15x)
    assert change["nf4-g64"] > 5 * change["int8-g128"]
