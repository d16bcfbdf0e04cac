"""MemFlex localization: where, among the fine-tuned LoRA matrices, forgetting the Unlearn Scope disagrees with
keeping the Retention Scope.

For each scope's **train** split (never val: that is the evaluation data), every answer is replaced by random
tokens (N seeded copies), the loss is backpropagated and the LoRA gradients are averaged: G_UL and G_RT. Per
LoRA matrix (module granularity) or per row of it (row granularity: the output neurons of B, the rank rows of
A), MemFlex compares cosine(G_UL, G_RT) and mean |G_UL|; the region is what has low cosine (the two scopes pull
apart) and high magnitude (the unlearn scope lives there).

The gradient statistics are cached under a key of the checkpoint, the data and the settings that shape them;
choosing a region from them (thresholds, quantile, top-k) is cheap and redone on every call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from knowundo.artifacts import atomic_path, read_json, relative_path
from knowundo.config import Config
from knowundo.data.format import Formatter, encode_items, pad_batch, pad_id_of
from knowundo.data.relabel import RelabelContext, random_labels
from knowundo.distributed import all_reduce_sum, barrier, is_main, rank, world_size
from knowundo.errors import KnowUndoError
from knowundo.layout import GRADIENT_STATS, GRADIENTS_RECORD, HEATMAP, SCOPES
from knowundo.logits import forward_on_answers, per_sample_nll
from knowundo.models.load import load_base, trainable_adapter
from knowundo.placement import on_device
from knowundo.region import Region, layer_of, lora_parameters
from knowundo.stage import Stage, adapter_hash

GRANULARITIES = ("module", "row")
SELECTIONS = ("thresholds", "quantile", "top_k")


@dataclass(frozen=True)
class Selection:
    """How to pick the region from the statistics.

    thresholds: cosine < mu and mean|G_UL| > sigma (paper Table 12). quantile: the same rule with mu and sigma
    set to the q and (1 - q) quantiles of this model's own statistics (thresholds do not transfer across
    models). top_k: the k units of lowest cosine among those with mean|G_UL| above the median."""

    kind: str = "thresholds"
    mu: float = 0.96
    sigma: float = 4e-4
    quantile: float = 0.3
    top_k: int = 8

    def __post_init__(self):
        if self.kind not in SELECTIONS:
            raise KnowUndoError(f"unknown selection {self.kind!r}; choose one of {', '.join(SELECTIONS)}")
        if not 0 < self.quantile < 1:
            raise KnowUndoError(f"localize.quantile must be in (0, 1), got {self.quantile}")
        if self.top_k < 1:
            raise KnowUndoError(f"localize.top_k must be >= 1, got {self.top_k}")


def average_gradients(
    model, features: list[dict], formatter: Formatter, copies: int, seed: int, batch_size: int, bar: tqdm | None = None
) -> dict[str, torch.Tensor]:
    """Mean gradient of the per-item loss over ``copies`` random relabellings of ``features``. With several
    processes each takes every world-size-th batch of the same relabelled list and the sums are all-reduced,
    so the result does not depend on the process count. ``bar`` advances once per batch."""
    params = lora_parameters(model)
    model.zero_grad(set_to_none=True)
    model.train()
    total = copies * len(features)
    first, stride = rank() * batch_size, world_size() * batch_size
    for copy in range(copies):
        generator = torch.Generator().manual_seed(seed * 1000 + copy)
        relabelled = random_labels(features, RelabelContext(None, formatter, generator))
        for start in range(first, len(relabelled), stride):
            batch = on_device(pad_batch(relabelled[start : start + batch_size], pad_id_of(formatter.tokenizer)))
            outputs, labels, _ = forward_on_answers(model, batch)
            (per_sample_nll(outputs.logits, labels).sum() / total).backward()
            if bar is not None:
                bar.update()
    grads = {}
    for name, p in params.items():
        grad = p.grad if p.grad is not None else torch.zeros_like(p)  # a process may have had no batch
        grads[name] = all_reduce_sum(grad.detach().float().clone()).cpu()
    model.zero_grad(set_to_none=True)
    return grads


def unit_statistics(g_ul: torch.Tensor, g_rt: torch.Tensor, granularity: str) -> dict[str, torch.Tensor]:
    """Cosine and mean |gradient| per unit: the whole matrix (shape [1]) or each row (shape [rows])."""
    if granularity == "module":
        g_ul, g_rt = g_ul.reshape(1, -1), g_rt.reshape(1, -1)
    cosine = torch.nn.functional.cosine_similarity(g_ul, g_rt, dim=1, eps=1e-20)
    return {"cosine": cosine, "unlearn_mean_abs": g_ul.abs().mean(1), "retain_mean_abs": g_rt.abs().mean(1)}


def select(stats: dict[str, dict[str, torch.Tensor]], selection: Selection) -> tuple[dict[str, torch.Tensor], dict]:
    """Boolean mask per parameter (one entry per unit) and the thresholds actually used. Units with no unlearn
    gradient at all (the A matrices of a fresh LoRA, whose B is zero) carry no information and are never chosen."""
    informative = torch.cat([s["unlearn_mean_abs"] > 0 for s in stats.values()])
    cos = torch.cat([s["cosine"] for s in stats.values()])[informative]
    mag = torch.cat([s["unlearn_mean_abs"] for s in stats.values()])[informative]
    if not informative.any():
        raise KnowUndoError("no LoRA matrix has an unlearn gradient: the model cannot be localized")
    if selection.kind == "thresholds":
        mu, sigma = selection.mu, selection.sigma
    elif selection.kind == "quantile":
        mu = float(torch.quantile(cos, selection.quantile))
        sigma = float(torch.quantile(mag, 1 - selection.quantile))
    else:
        sigma = float(torch.quantile(mag, 0.5))
        eligible = torch.where(mag >= sigma, cos, torch.full_like(cos, torch.inf))
        k = min(selection.top_k, int((mag >= sigma).sum()))
        mu = float(eligible.kthvalue(k).values) if k else -torch.inf
        # ties at the k-th cosine could select more than k; nudging mu keeps exactly "cosine <= k-th"
        mu = float(torch.nextafter(torch.tensor(mu), torch.tensor(torch.inf)))
        sigma = float(torch.nextafter(torch.tensor(sigma), torch.tensor(-torch.inf)))
    masks = {name: (s["cosine"] < mu) & (s["unlearn_mean_abs"] > max(sigma, 0.0)) for name, s in stats.items()}
    return masks, {
        "kind": selection.kind,
        "mu": mu,
        "sigma": sigma,
        "quantile": selection.quantile,
        "top_k": selection.top_k,
    }


def gradient_statistics(
    model,
    formatter: Formatter,
    train_items: dict[str, list[dict]],
    copies: int,
    seed: int,
    batch_size: int,
    granularity: str,
    progress: bool = True,
    desc: str = "localize",
) -> dict[str, dict[str, torch.Tensor]]:
    """Per LoRA matrix of ``model`` (its trainable adapter): the cosine of G_UL and G_RT and their mean absolute
    values, per unit of ``granularity``, from ``copies`` random relabellings of each scope's train items."""
    features = {scope: encode_items(train_items[scope], formatter).features for scope in SCOPES}
    step = world_size() * batch_size
    batches = sum(len(range(rank() * batch_size, len(f), step)) for f in features.values()) * copies
    with tqdm(total=batches, desc=desc, unit="batch", disable=not progress, leave=False) as bar:
        grads = {
            scope: average_gradients(model, f, formatter, copies, seed, batch_size, bar)
            for scope, f in features.items()
        }
    return {
        name: unit_statistics(grads["unlearn"][name], grads["retention"][name], granularity)
        for name in grads["unlearn"]
    }


def compute_statistics(
    cfg: Config, domain: str, finetuned_adapter: Path | None, out_dir: Path, granularity: str, progress: bool = True
) -> dict[str, dict[str, torch.Tensor]]:
    """:func:`gradient_statistics` of a saved adapter, cached in ``out_dir`` under the stage key (the selection is
    not part of it: choosing another region from the same statistics recomputes nothing)."""
    stage = Stage("localize", cfg, domain)
    train_only = {scope: stage.train(scope) for scope in SCOPES}
    loc = cfg.localize
    output = stage.output(
        out_dir,
        GRADIENTS_RECORD,
        train_only,
        adapter=adapter_hash(finetuned_adapter),
        copies=loc.copies,
        granularity=granularity,
        batch_size=loc.batch_size,
    )
    if output.finished() is None:
        model, tokenizer = load_base(cfg)
        model = trainable_adapter(model, finetuned_adapter, cfg)
        stats = gradient_statistics(
            model,
            stage.formatter(tokenizer),
            train_only,
            loc.copies,
            cfg.seed,
            loc.batch_size,
            granularity,
            progress,
            f"localize {domain}",
        )
        work = output.begin()
        if is_main():
            save_file(
                {f"{name}::{stat}": value.contiguous() for name, unit in stats.items() for stat, value in unit.items()},
                str(work / GRADIENT_STATS),
            )
        output.commit(
            stage.record(
                output.key,
                train_only,
                granularity=granularity,
                copies=loc.copies,
                adapter=relative_path(finetuned_adapter, output.out_dir) if finetuned_adapter is not None else None,
                adapter_hash=adapter_hash(finetuned_adapter),
                splits="train",
            )
        )
    stats: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(Path(out_dir) / GRADIENT_STATS)).items():
        name, stat = key.split("::")
        stats.setdefault(name, {})[stat] = value
    return stats


def choose_region(stats: dict[str, dict[str, torch.Tensor]], selection: Selection, granularity: str) -> Region:
    """The region that ``selection`` picks from the statistics, with a summary of each matrix's statistics."""
    masks, used = select(stats, selection)
    units = [
        {
            "parameter": name,
            "units": int(mask.numel()),
            "selected_units": int(mask.sum()),
            "cosine": _summary(stats[name]["cosine"]),
            "unlearn_mean_abs": _summary(stats[name]["unlearn_mean_abs"]),
            "retain_mean_abs": _summary(stats[name]["retain_mean_abs"]),
            "selected": bool(mask.any()),
        }
        for name, mask in masks.items()
    ]
    return Region(masks, granularity, used, units)


def selection_for(cfg: Config, domain: str) -> Selection:
    """The region selection of ``domain`` from the settings (checked: one-line errors)."""
    loc = cfg.localize
    if loc.granularity not in GRANULARITIES:
        raise KnowUndoError(f"unknown granularity {loc.granularity!r}; choose one of {', '.join(GRANULARITIES)}")
    return Selection(
        loc.selection, loc.threshold("mu", domain), loc.threshold("sigma", domain), loc.quantile, loc.top_k
    )


def check_localize(cfg: Config, domain: str, finetuned_adapter: str | Path | None) -> Selection:
    """The selection to apply, after checking the settings, the data and the adapter (before any work)."""
    selection = selection_for(cfg, domain)
    Stage("localize", cfg, domain).data  # noqa: B018  (loads and validates the domain)
    adapter_hash(finetuned_adapter)
    return selection


def localize(
    cfg: Config, domain: str, finetuned_adapter: str | Path | None, out_dir: str | Path, progress: bool = True
) -> dict:
    """Compute (or reuse) the statistics, select the region, write ``region.json`` (+ row masks) and heatmap;
    ``progress``: a bar over the gradient batches. Without an adapter (a model that already knows its data), the
    gradients are those of a fresh LoRA: its A matrices get none (B is zero), so the region is made of B matrices,
    whose gradients are the full weights' projected through the fixed A."""
    selection = check_localize(cfg, domain, finetuned_adapter)
    granularity = cfg.localize.granularity
    finetuned_adapter = Path(finetuned_adapter) if finetuned_adapter is not None else None
    out_dir = Path(out_dir)
    stats = compute_statistics(cfg, domain, finetuned_adapter, out_dir, granularity, progress)
    region = choose_region(stats, selection, granularity)
    statistics = read_json(out_dir / GRADIENTS_RECORD)
    record = region.to_json(
        domain=domain,
        source={k: statistics[k] for k in ("key", "adapter_hash", "data_hash", "copies")},
        seed=cfg.seed,
        data_hash=statistics["data_hash"],
        versions=statistics["versions"],
    )
    if is_main():
        region.save(out_dir, record)
        plot_heatmap(stats, region.masks, out_dir / HEATMAP)
    barrier()
    return record


def _summary(values: torch.Tensor) -> float | dict[str, float]:
    if values.numel() == 1:
        return float(values[0])
    return {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}


def plot_heatmap(stats: dict[str, dict[str, torch.Tensor]], masks: dict[str, torch.Tensor], out_file: Path) -> None:
    """Layer x (module, A/B) heatmaps of cosine(G_UL, G_RT) and log10 mean|G_UL|; region cells boxed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = {}
    for name, s in stats.items():
        match = re.search(r"(\w+)\.lora_([AB])", name)
        if match and layer_of(name) is not None:
            cells[(layer_of(name), f"{match[1]}.{match[2]}")] = (
                float(s["cosine"].mean()),
                float(s["unlearn_mean_abs"].mean().clamp(min=1e-30).log10()),
                float(masks[name].float().mean()),
            )
    if not cells:
        return
    layers = sorted({layer for layer, _ in cells})
    columns = sorted({column for _, column in cells})
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 0.7 * len(columns) * 2), 1.5 + 0.35 * len(layers)))
    for panel, (ax, title, cmap) in enumerate(
        zip(axes, ("cosine(G_UL, G_RT)", "log10 mean |G_UL|"), ("coolwarm", "viridis"))
    ):
        grid = [[cells.get((layer, column), (float("nan"),) * 3)[panel] for column in columns] for layer in layers]
        image = ax.imshow(grid, aspect="auto", cmap=cmap)
        fig.colorbar(image, ax=ax, fraction=0.046)
        for i, layer in enumerate(layers):
            for j, column in enumerate(columns):
                share = cells.get((layer, column), (0, 0, 0))[2]
                if share > 0:
                    ax.add_patch(
                        plt.Rectangle(
                            (j - 0.5, i - 0.5), 1, 1, fill=False, lw=2, edgecolor="black", alpha=max(0.3, share)
                        )
                    )
        ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(layers)), [f"layer {layer}" for layer in layers], fontsize=7)
        ax.set_title(title)
    fig.suptitle("MemFlex localization (boxed: region)")
    fig.tight_layout()
    with atomic_path(out_file) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
