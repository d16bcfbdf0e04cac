"""Loading any Hugging Face causal LM (or the tiny default), attaching LoRA, and loading saved adapters."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

from knowundo.config import Config
from knowundo.errors import KnowUndoError
from knowundo.layout import ADAPTER_WEIGHTS

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def prepare_base(cfg: Config, progress: bool = True) -> None:
    """The explicit step before any stage loads the model: for ``model.name: tiny``, build the tiny base once
    (cached); any other model is loaded as it is."""
    if cfg.model.name == "tiny":
        from knowundo.models.tiny import ensure_tiny

        ensure_tiny(cfg.tiny, progress=progress)


def resolve_model_path(cfg: Config) -> str:
    """The directory or hub id to load (the cached tiny base for ``name: tiny``, which must be built)."""
    if cfg.model.name == "tiny":
        from knowundo.models.tiny import is_built, tiny_path

        if not is_built(cfg.tiny):
            raise KnowUndoError("the tiny base model is not built for these tiny.* settings; call "
                                "knowundo.models.load.prepare_base(cfg) first (every knowundo command does)")
        return str(tiny_path(cfg.tiny))
    return cfg.model.name


def _looks_local(name: str) -> bool:
    """A name that can only be a directory (a Hub id is ``name`` or ``org/name``)."""
    return Path(name).is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name


def load_model_config(path: str, trust_remote_code: bool = False):
    """The model's configuration only (no weights); a missing directory or an unreachable Hub id is one line."""
    from transformers import AutoConfig

    if _looks_local(path) and not Path(path).expanduser().is_dir():
        raise KnowUndoError(f"cannot load model {path!r}: no such directory")
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        where = "" if Path(path).is_dir() else "not a local directory, and "
        raise KnowUndoError(f"cannot load model {path!r}: {where}{str(exc).splitlines()[0]}") from None


def load_base(cfg: Config):
    """(model, tokenizer) for ``cfg.model``; ``trust_remote_code`` only when the user turned it on."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if cfg.model.dtype not in DTYPES:
        raise KnowUndoError(f"unknown dtype {cfg.model.dtype!r}; choose one of {', '.join(DTYPES)}")
    path = resolve_model_path(cfg)
    remote = cfg.model.trust_remote_code
    model_config = load_model_config(path, remote)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, config=model_config, dtype=DTYPES[cfg.model.dtype],
                                                     trust_remote_code=remote)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=remote)
    except ValueError as exc:  # e.g. a config that has no causal-LM head
        raise KnowUndoError(f"{path!r} is not a causal language model: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise KnowUndoError(f"cannot load model {path!r}: {str(exc).splitlines()[0]}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # masking is positional, so pad == eos is safe here
    return model, tokenizer


def attach_lora(model, cfg: Config):
    """The fine-tune's LoRA on ``lora.target_modules``; a one-line error when a named module is not in the model."""
    from peft import LoraConfig, get_peft_model
    from peft.utils.error import NoMatchingPeftModuleError

    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM",
                      trainable_token_indices=_embedding_rows(model) if cfg.lora.train_embeddings else None)
    try:
        return get_peft_model(model, lora)
    except NoMatchingPeftModuleError:
        raise KnowUndoError(f"lora.target_modules: {cfg.lora.target_modules} names no module of "
                            f"{type(model).__name__} (its linear layers: {', '.join(_linear_names(model))})") from None


def _embedding_rows(model) -> dict[str, list[int]]:
    """Every row of the input embeddings and, when not tied to them, of the output head (by module name, as
    peft's ``trainable_token_indices`` takes them; a tied head follows the embeddings by itself)."""
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    names = {module: name.rsplit(".", 1)[-1] for name, module in model.named_modules()}
    rows = {names[embeddings]: list(range(embeddings.weight.shape[0]))}
    if head is not None and head.weight is not embeddings.weight:
        rows[names[head]] = list(range(head.weight.shape[0]))
    return rows


def _linear_names(model) -> list[str]:
    """The names of the model's linear layers, as LoRA targets them (GPT-2's are ``Conv1D``)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, (torch.nn.Linear, Conv1D))})


def adapter_weights(adapter_dir: str | Path) -> Path:
    """The weights file of a saved LoRA adapter (what stage keys hash); a user error if it is not there."""
    path = Path(adapter_dir) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise KnowUndoError(f"{adapter_dir}: no LoRA adapter there ({ADAPTER_WEIGHTS} missing)")
    return path


def load_adapter(model, adapter_dir: str | Path, trainable: bool = False, name: str = "default"):
    """Wrap ``model`` with a saved LoRA adapter; a mismatch with the base model is a user error."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise KnowUndoError(f"{adapter_dir}: not a LoRA adapter directory (no adapter_config.json)")
    adapter_weights(adapter_dir)  # safetensors only: a pickled adapter_model.bin is never loaded
    try:
        return PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=name, is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise KnowUndoError(f"{adapter_dir}: adapter does not match the base model "
                            f"({str(exc).splitlines()[0][:200]})") from None


SWAPPED_ADAPTER = "swapped"  # the name an adapter swapped in for a while is loaded under


@contextmanager
def swapped_adapter(model, adapter: str | Path):
    """``model`` with another saved adapter active for a while (a checkpoint, an attacked copy, the oracle as a
    judge), then as it was — its own adapter active and frozen as it was (peft's set_adapter makes the adapter
    it activates trainable); a model without an adapter gets the LoRA layers removed again. No second copy of
    the base model."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        wrapped = load_adapter(model, adapter)
        try:
            yield wrapped
        finally:
            wrapped.unload()
        return
    trainable = {param: param.requires_grad for param in model.parameters()}
    active = model.active_adapter
    try:
        model.load_adapter(str(adapter), adapter_name=SWAPPED_ADAPTER)
        model.set_adapter(SWAPPED_ADAPTER)
        yield model
    finally:
        model.set_adapter(active)
        if SWAPPED_ADAPTER in model.peft_config:
            model.delete_adapter(SWAPPED_ADAPTER)
        for param, requires_grad in trainable.items():
            param.requires_grad_(requires_grad)
