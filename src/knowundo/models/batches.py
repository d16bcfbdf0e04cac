"""What a training stage feeds the Trainer: encoded items as a dataset, the sampler that groups them by the lengths
served, and the collators that pad them into batches."""

from __future__ import annotations

import random

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from knowundo.data.format import pad_batch


class FeatureDataset(torch.utils.data.Dataset):
    """Encoded items kept as Python lists; padding happens per batch in :class:`PadCollator`."""

    def __init__(self, features: list[dict]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        return self.features[index]


class PromptShareDataset(FeatureDataset):
    """Features of which some have a second encoding, under a system prompt: each epoch a fresh seeded ``share`` of
    those is served under it, the rest plainly, so every fact is trained both ways over the epochs (a fixed share
    asked only under prompts was not learned plainly). :class:`SetEpoch` tells it the epoch."""

    def __init__(self, features: list[dict], prompted: dict[int, dict], share: float, seed: int):
        super().__init__(features)
        self.prompted, self.share, self.seed = prompted, share, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        rng = random.Random(f"{self.seed}/{epoch}")
        self.asked = {index for index in sorted(self.prompted) if rng.random() < self.share}

    def __getitem__(self, index: int) -> dict:
        return self.prompted[index] if index in self.asked else self.features[index]


class ServedLengthGroupedSampler(LengthGroupedSampler):
    """Trainer's length grouping, by the lengths the dataset serves in the epoch that begins: a
    :class:`PromptShareDataset` changes them with each draw (grouped by the first epoch's lengths, later epochs
    would pad their batches to far more positions than they hold)."""

    def __init__(self, batch_size: int, dataset: PromptShareDataset):
        super().__init__(batch_size, dataset=dataset)
        self.dataset = dataset

    def __iter__(self):
        self.lengths = [len(self.dataset[index]["input_ids"]) for index in range(len(self.dataset))]
        return super().__iter__()


class PadCollator:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        return pad_batch(features, self.pad_id)


class ReplayIdCollator(PadCollator):
    """:class:`PadCollator` plus each item's ``replay_id`` (its place in the replayed set; -1 for the items
    trained on their gold answers)."""

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = super().__call__(features)  # pad_batch reads only input_ids and labels
        batch["replay_id"] = torch.tensor([f.get("replay_id", -1) for f in features])
        return batch
