"""Regions: the LoRA matrices (or rows of them) that an unlearning run may change. Everything outside is frozen.

A region is a boolean unit mask per LoRA parameter: one entry (the whole matrix) or one per row (output neurons
of B, rank rows of A); for a model trained whole (``unlearn.full_parameters``), the whole weights of the modules
whose LoRA matrices it selects. It comes from a ``region.json`` written by MemFlex localization, or from a method that
defines its own (RMU trains the layers up to its steering layer). Reading and applying a region lives here,
below both localization and unlearning, so neither imports the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from knowundo.artifacts import atomic_path, read_json, write_json
from knowundo.errors import KnowUndoError
from knowundo.layout import REGION_FILE, ROW_MASKS

LAYER_INDEX = re.compile(r"\.(?:layers|h|blocks)\.(\d+)\.")  # Llama/Qwen/Mistral/Gemma/Phi-3, GPT-2, GPT-NeoX


@dataclass
class Region:
    """Where an unlearning run may change the model: a boolean unit mask per LoRA parameter name (one entry: the
    whole matrix; one per row: its rows), how it was chosen, and per parameter a summary of the statistics it was
    chosen from (``units``). What :func:`knowundo.localize_model` returns and :func:`knowundo.unlearn_model`
    takes; saved as ``region.json`` (+ the row masks in safetensors)."""

    masks: dict[str, torch.Tensor]
    granularity: str = "module"
    selection: dict = field(default_factory=dict)
    units: list[dict] = field(default_factory=list)

    @property
    def selected(self) -> list[str]:
        """The parameters with at least one unit in the region."""
        return [name for name, mask in self.masks.items() if bool(mask.any())]

    def to_json(self, **provenance) -> dict:
        """The ``region.json`` object: granularity, selection, counts, ``provenance`` and the per-parameter units."""
        return {
            "domain": provenance.pop("domain", None),
            "granularity": self.granularity,
            "selection": self.selection,
            "selected_parameters": len(self.selected),
            "selected_units": sum(int(mask.sum()) for mask in self.masks.values()),
            "total_units": sum(mask.numel() for mask in self.masks.values()),
            **provenance,
            "parameters": self.units
            or [
                {
                    "parameter": name,
                    "units": int(mask.numel()),
                    "selected_units": int(mask.sum()),
                    "selected": bool(mask.any()),
                }
                for name, mask in self.masks.items()
            ],
        }

    def save(self, out_dir: str | Path, record: dict | None = None) -> Path:
        """Write ``region.json`` (``record``, or :meth:`to_json`) and, for rows, the masks beside it."""
        out_dir = Path(out_dir)
        if self.granularity == "row":
            with atomic_path(out_dir / ROW_MASKS) as tmp:
                save_file({name: mask.to(torch.uint8) for name, mask in self.masks.items()}, str(tmp))
        write_json(out_dir / REGION_FILE, record if record is not None else self.to_json())
        return out_dir / REGION_FILE


def lora_parameters(model) -> dict[str, torch.nn.Parameter]:
    """The trainable LoRA A/B matrices of the active adapter, by parameter name."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad and ("lora_A" in n or "lora_B" in n)}
    if not params:
        raise KnowUndoError("the model has no trainable LoRA matrices to localize in")
    return params


def region_parameters(model) -> dict[str, torch.nn.Parameter]:
    """The parameters a region chooses among: a peft model's LoRA matrices (:func:`lora_parameters`), or every
    parameter of a plain model trained whole (``unlearn.full_parameters``)."""
    from peft import PeftModel

    return lora_parameters(model) if isinstance(model, PeftModel) else dict(model.named_parameters())


LORA_MATRIX = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_[AB]\.[^.]+\.weight$")


def whole_module_masks(masks: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """A region of LoRA matrices carried over to a plain model trained whole: every parameter of a module (its
    weight, its bias) is in the region when any unit of that module's LoRA matrices is. Rows of LoRA matrices
    have no counterpart in the whole weight: a row region is an error."""
    selected: dict[str, bool] = {}
    for name, mask in masks.items():
        match = LORA_MATRIX.match(name)
        if match is None:
            raise KnowUndoError(f"the region names {name}, not a LoRA matrix")
        if mask.numel() > 1 and not (mask.all() or not mask.any()):
            raise KnowUndoError("a region of LoRA rows cannot select parts of whole weights; localize by module")
        selected[match["module"]] = selected.get(match["module"], False) or bool(mask.any())
    params = dict(model.named_parameters())
    modules = {name.rsplit(".", 1)[0] for name in params}
    if missing := [module for module in selected if module not in modules]:
        raise KnowUndoError(f"the region names {len(missing)} modules the model lacks, e.g. {missing[0]}")
    return {name: torch.tensor([selected.get(name.rsplit(".", 1)[0], False)]) for name in params}


def layer_of(name: str) -> int | None:
    """The decoder layer a parameter belongs to (0-based), or None (embeddings, head)."""
    match = LAYER_INDEX.search(name)
    return int(match[1]) if match else None


def layer_region(model, layers: range) -> dict[str, torch.Tensor]:
    """Every LoRA matrix (every parameter, trained whole) of the decoder layers in ``layers``, whole."""
    masks = {name: torch.tensor([layer_of(name) in layers]) for name in region_parameters(model)}
    if not any(mask.any() for mask in masks.values()):
        raise KnowUndoError(f"no trained parameter in layers {layers.start}..{layers.stop - 1} of the model")
    return masks


def load_region(region: Region | str | Path, model) -> dict[str, torch.Tensor]:
    """Boolean unit mask per LoRA parameter of ``model`` from a :class:`Region` or a ``region.json`` (row masks from
    the safetensors file beside it); for a plain model trained whole, per parameter (:func:`whole_module_masks`).
    Names that the model lacks, or an empty region, are errors."""
    from peft import PeftModel

    params = dict(model.named_parameters()) if isinstance(model, PeftModel) else {}
    if isinstance(region, Region):
        if unknown := [name for name in region.masks if params and name not in params]:
            raise KnowUndoError(f"the region names {len(unknown)} parameters the model lacks, e.g. {unknown[0]}")
        masks = region.masks
    else:
        masks = _lora_region(region, params)
    return masks if params else whole_module_masks(masks, model)


def _lora_region(path: str | Path, params: dict) -> dict[str, torch.Tensor]:
    """The masks of a ``region.json``, checked against ``params`` (LoRA parameters by name; empty: unchecked)."""
    path = Path(path)
    if not path.is_file():
        raise KnowUndoError(f"{path}: region file not found")
    try:
        region = read_json(path)
        entries = {u["parameter"]: u for u in region["parameters"]}
        granularity = region["granularity"]
    except (ValueError, KeyError, TypeError) as exc:
        raise KnowUndoError(f"{path}: not a region file ({type(exc).__name__}: {exc})") from None
    unknown = [name for name in entries if params and name not in params]
    if unknown:
        raise KnowUndoError(f"{path}: {len(unknown)} region parameters do not exist in the model, e.g. {unknown[0]}")
    if granularity == "row":
        rows = path.parent / ROW_MASKS
        if not rows.is_file():
            raise KnowUndoError(f"{path}: row region without its masks file {rows.name}")
        masks = {name: mask.bool() for name, mask in load_file(str(rows)).items()}
        if unknown := [name for name in masks if params and name not in params]:
            raise KnowUndoError(f"{rows}: {len(unknown)} masks name parameters the model lacks, e.g. {unknown[0]}")
    else:
        masks = {name: torch.tensor([bool(u["selected"])]) for name, u in entries.items()}
    if not any(mask.any() for mask in masks.values()):
        raise KnowUndoError(f"{path}: the region is empty (no LoRA matrix selected); loosen the selection")
    for name, mask in masks.items():
        if params and mask.numel() not in (1, params[name].shape[0]):
            raise KnowUndoError(
                f"{path}: the mask of {name} has {mask.numel()} rows, the model {params[name].shape[0]}"
            )
    return masks


def apply_region(model, masks: dict[str, torch.Tensor], weight_decay: float) -> list:
    """Freeze every LoRA matrix (every parameter of a plain model trained whole) outside the region, and every
    other trained parameter (embedding rows trained with the adapter: a region is LoRA matrices only); inside a row
    region, zero the gradient of unselected rows. Returns the hook handles. Row masks need weight_decay 0: decay
    would move the masked rows."""
    handles = []
    lora = region_parameters(model)
    for name, param in model.named_parameters():
        if name not in lora:
            param.requires_grad_(False)
    for name, param in lora.items():
        mask = masks.get(name)
        param.requires_grad_(mask is not None and bool(mask.any()))
        if param.requires_grad and mask.numel() > 1 and not mask.all():
            if weight_decay:
                raise KnowUndoError(
                    "a row-granularity region needs unlearn.weight_decay=0 (decay would change "
                    "the rows outside the region)"
                )
            row_mask = mask.to(param.dtype).unsqueeze(1).to(param.device)
            handles.append(param.register_hook(lambda grad, m=row_mask: grad * m))
    return handles
