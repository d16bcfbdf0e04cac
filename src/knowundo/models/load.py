"""Loading any Hugging Face causal LM (or the tiny default), attaching LoRA, and loading saved adapters."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

from knowundo.config import BUILT_IN_MODELS, Config
from knowundo.errors import KnowUndoError
from knowundo.layout import ADAPTER_WEIGHTS

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": None}


def resolved_dtype(name: str) -> str:
    """``model.dtype`` as the model runs: ``auto`` is bfloat16 on a device that computes in it natively (a GPU
    that supports it, a CPU with bfloat16 instructions: :func:`~knowundo.placement.supports_bf16`) and float32
    elsewhere. Log-probabilities are taken in float32 either way; the forward pass itself rounds in bfloat16."""
    if name not in DTYPES:
        raise KnowUndoError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    if name == "auto":
        from knowundo.placement import supports_bf16

        return "bfloat16" if supports_bf16() else "float32"
    return name


def trains_in_bf16(cfg: Config) -> bool:
    """Whether the Trainer runs in bfloat16 mixed precision (the model's resolved dtype is bfloat16)."""
    return resolved_dtype(cfg.model.dtype) == "bfloat16"


def prepare_base(cfg: Config, progress: bool = True) -> None:
    """The explicit step before any stage loads the model: a built-in model (``tiny``: built once; ``smollm2``:
    converted once from its GGUF file) is made ready in the cache; any other model is loaded as it is."""
    if cfg.model.name == "tiny":
        from knowundo.models.tiny import ensure_tiny

        ensure_tiny(cfg.tiny, progress=progress)
    elif cfg.model.name == "smollm2":
        from knowundo.models.smollm2 import ensure_smollm2

        ensure_smollm2()


def is_prepared(cfg: Config) -> bool:
    """Whether the model is ready to load (a built-in one built or converted; any other always)."""
    if cfg.model.name == "tiny":
        from knowundo.models.tiny import is_built

        return is_built(cfg.tiny)
    if cfg.model.name == "smollm2":
        from knowundo.models.smollm2 import is_converted

        return is_converted()
    return True


def resolve_model_path(cfg: Config) -> str:
    """The directory or hub id to load (the cached directory of a built-in model, which must be ready)."""
    if cfg.model.name == "tiny":
        from knowundo.models.tiny import is_built, tiny_path

        if not is_built(cfg.tiny):
            raise KnowUndoError(
                "the tiny base model is not built for these tiny.* settings; call "
                "knowundo.models.load.prepare_base(cfg) first (every knowundo command does)"
            )
        return str(tiny_path(cfg.tiny))
    if cfg.model.name == "smollm2":
        from knowundo.models.smollm2 import is_converted, smollm2_path

        if not is_converted():
            raise KnowUndoError(
                "the smollm2 model is not converted yet; call knowundo.models.load.prepare_base(cfg) "
                "first (every knowundo command does)"
            )
        return str(smollm2_path())
    return cfg.model.name


def built_in_key(cfg: Config) -> dict:
    """What identifies a built-in model beyond its name, for stage keys: the tiny model's recipe, the smollm2
    weights' hash."""
    if cfg.model.name == "tiny":
        return {"tiny": cfg.to_dict()["tiny"]}
    if cfg.model.name == "smollm2":
        from knowundo.models.smollm2 import weights_key

        return {"weights": weights_key()}
    return {}


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


def load_tokenizer(cfg: Config, path: str | None = None):
    """The model's tokenizer, or the one at ``path`` (pad set to EOS where it has none: masking is positional, so
    pad == eos is safe)."""
    from transformers import AutoTokenizer

    path = path or resolve_model_path(cfg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise KnowUndoError(f"cannot load the tokenizer of {path!r}: {str(exc).splitlines()[0]}") from None
    return with_pad_token(tokenizer)


def with_pad_token(tokenizer):
    """The tokenizer with a pad token: EOS where it has none (masking is positional, so pad == EOS is safe)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path: str, cfg: Config):
    """A causal LM from a directory or Hub id, on this process's device (:mod:`knowundo.placement`) in
    ``model.dtype`` resolved; ``trust_remote_code`` only when the user turned it on."""
    from transformers import AutoModelForCausalLM

    from knowundo.placement import place

    dtype = DTYPES[resolved_dtype(cfg.model.dtype)]
    remote = cfg.model.trust_remote_code
    model_config = load_model_config(path, remote)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, config=model_config, dtype=dtype, trust_remote_code=remote)
    except ValueError as exc:  # e.g. a config that has no causal-LM head
        raise KnowUndoError(f"{path!r} is not a causal language model: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise KnowUndoError(f"cannot load model {path!r}: {str(exc).splitlines()[0]}") from None
    return place(model)


def load_base(cfg: Config):
    """(model, tokenizer) for ``cfg.model`` (:func:`load_causal_lm`)."""
    return load_causal_lm(resolve_model_path(cfg), cfg), load_tokenizer(cfg)


def check_oracle_model(cfg: Config, name: str, tokenizer=None) -> None:
    """A model given as the oracle, checked before any work: a loadable causal LM (a local one with safetensors
    weights) that reads the same tokens as the model — every per-token comparison with it assumes so."""
    if name in BUILT_IN_MODELS:
        raise KnowUndoError(f"{name!r} is a built-in base model, not an oracle")
    load_model_config(name, cfg.model.trust_remote_code)
    if Path(name).expanduser().is_dir():
        checkpoint_weights(name)
    model_tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg)
    if load_tokenizer(cfg, name).get_vocab() != model_tokenizer.get_vocab():
        raise KnowUndoError(f"{name!r} has another tokenizer than the model {cfg.model.name!r}")


def is_full_checkpoint(path: str | Path) -> bool:
    """A directory of a whole model's weights (what ``unlearn.full_parameters`` saves), not a LoRA adapter."""
    path = Path(path)
    return (path / "config.json").is_file() and not (path / "adapter_config.json").is_file()


def checkpoint_weights(path: str | Path) -> list[Path]:
    """The weights files of a saved LoRA adapter or full checkpoint (what stage keys hash); safetensors only, so a
    pickled checkpoint is never loaded."""
    if is_full_checkpoint(path):
        files = sorted(Path(path).glob("*.safetensors"))
        if not files:
            raise KnowUndoError(f"{path}: no model weights there (no .safetensors file)")
        return files
    return [adapter_weights(path)]


def load_checkpoint(cfg: Config, checkpoint: str | Path | None, trainable: bool = False):
    """(model, tokenizer) of a saved model: the base model (None), the base with a saved LoRA adapter, or a full
    checkpoint's own weights (``cfg.model``'s tokenizer); ``trainable``: the adapter, or every weight of a full
    checkpoint, trains."""
    if checkpoint is not None and is_full_checkpoint(checkpoint):
        checkpoint_weights(checkpoint)  # safetensors there: from_pretrained would also take a pickled file
        model = load_causal_lm(str(checkpoint), cfg)
        model.requires_grad_(trainable)
        return model, load_tokenizer(cfg)
    model, tokenizer = load_base(cfg)
    return (load_adapter(model, checkpoint, trainable=trainable) if checkpoint is not None else model), tokenizer


@contextmanager
def model_beside(cfg: Config, name: str | None = None):
    """Another model loaded for a while beside the one in use, in eval mode, then freed: ``cfg.model`` or the model
    ``name`` (a Hub id or directory). For a judge that the model in use cannot become by switching an adapter (a
    full checkpoint has none to switch off)."""
    import gc

    model = load_causal_lm(name or resolve_model_path(cfg), cfg)
    model.eval()
    try:
        yield model
    finally:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def attach_lora(model, cfg: Config):
    """The fine-tune's LoRA on ``lora.target_modules``; a one-line error when a named module is not in the model."""
    from peft import LoraConfig, get_peft_model
    from peft.utils.error import NoMatchingPeftModuleError

    layers = adapted_layers(model.config, cfg.lora.top_layers)
    targets = cfg.lora.target_modules
    if layers is not None and targets == "all-linear":  # peft takes layer indices with module names only
        head = model.get_output_embeddings()
        targets = [name for name in _linear_names(model) if head is None or name != _module_name(model, head)]
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        layers_to_transform=layers,
        trainable_token_indices=_embedding_rows(model) if cfg.lora.train_embeddings else None,
    )
    try:
        return get_peft_model(model, lora)
    except NoMatchingPeftModuleError:
        raise KnowUndoError(
            f"lora.target_modules: {cfg.lora.target_modules} names no module of "
            f"{type(model).__name__} (its linear layers: {', '.join(_linear_names(model))})"
        ) from None


def adapted_layers(model_config, top_layers: int) -> list[int] | None:
    """The indices of the top ``top_layers`` transformer layers (None: every layer); a one-line error when the
    model has fewer."""
    if not top_layers:
        return None
    text = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    layers = text.num_hidden_layers
    if top_layers > layers:
        raise KnowUndoError(f"lora.top_layers={top_layers} but the model has {layers} layers")
    return list(range(layers - top_layers, layers))


def _embedding_rows(model) -> dict[str, list[int]]:
    """Every row of the input embeddings and, when not tied to them, of the output head (by module name, as
    peft's ``trainable_token_indices`` takes them; a tied head follows the embeddings by itself)."""
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    rows = {_module_name(model, embeddings): list(range(embeddings.weight.shape[0]))}
    if head is not None and head.weight is not embeddings.weight:
        rows[_module_name(model, head)] = list(range(head.weight.shape[0]))
    return rows


def _module_name(model, module) -> str:
    """The last part of ``module``'s name in ``model`` (as peft matches modules)."""
    return next(name.rsplit(".", 1)[-1] for name, candidate in model.named_modules() if candidate is module)


def _linear_names(model) -> list[str]:
    """The names of the model's linear layers, as LoRA targets them (GPT-2's are ``Conv1D``)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, (torch.nn.Linear, Conv1D))
        }
    )


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
        raise KnowUndoError(
            f"{adapter_dir}: adapter does not match the base model ({str(exc).splitlines()[0][:200]})"
        ) from None


SWAPPED_ADAPTER = "swapped"  # the name an adapter swapped in for a while is loaded under


def trainable_adapter(model, adapter_dir: str | Path | None, cfg: Config):
    """``model`` with a trainable ``default`` adapter: the saved one, or — for a model that enters already knowing
    its data (``run.finetune: false``) — a fresh LoRA, seeded, whose zero B matrices leave the model as it was."""
    if adapter_dir is not None:
        return load_adapter(model, adapter_dir, trainable=True)
    from transformers import set_seed

    set_seed(cfg.seed, deterministic=True)
    return attach_lora(model, cfg)


@contextmanager
def swapped_checkpoint(model, checkpoint: str | Path):
    """``model`` with another saved checkpoint in place for a while (a checkpoint, an attacked copy, the oracle as
    a judge), then as it was. A LoRA adapter is loaded beside the model's own and made active — its own adapter
    active and frozen as it was afterwards (peft's set_adapter makes the adapter it activates trainable); a model
    without an adapter gets the LoRA layers removed again. A full checkpoint's weights are copied over the
    model's, the originals kept on the CPU meanwhile. No second copy of the model on its device."""
    from peft import PeftModel

    if is_full_checkpoint(checkpoint):
        with _weights_swapped(model, checkpoint):
            yield model
        return
    if not isinstance(model, PeftModel):
        wrapped = load_adapter(model, checkpoint)
        try:
            yield wrapped
        finally:
            wrapped.unload()
        return
    trainable = {param: param.requires_grad for param in model.parameters()}
    active = model.active_adapter
    try:
        model.load_adapter(str(checkpoint), adapter_name=SWAPPED_ADAPTER)
        model.set_adapter(SWAPPED_ADAPTER)
        yield model
    finally:
        model.set_adapter(active)
        if SWAPPED_ADAPTER in model.peft_config:
            model.delete_adapter(SWAPPED_ADAPTER)
        for param, requires_grad in trainable.items():
            param.requires_grad_(requires_grad)


@contextmanager
def _weights_swapped(model, checkpoint: str | Path):
    from safetensors.torch import load_file

    tensors = model.state_dict()
    saved: dict[str, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for path in checkpoint_weights(checkpoint):
                for name, value in load_file(str(path)).items():
                    if name not in tensors or tensors[name].shape != value.shape:
                        raise KnowUndoError(f"{checkpoint}: {name} does not match the evaluated model")
                    saved.setdefault(name, tensors[name].detach().to("cpu", copy=True))
                    tensors[name].copy_(value.to(tensors[name].dtype))
        yield
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                tensors[name].copy_(value.to(tensors[name].device))
