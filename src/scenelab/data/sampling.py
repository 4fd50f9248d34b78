"""Training order and augmentation that a run can stop and resume at any step, alone or in DDP.

`ResumableSampler` is torch's `DistributedSampler` (the epoch's order comes from (seed, epoch)
and is split across ranks; one process is rank 0 of 1) that can also start part-way through an
epoch. It yields (index, seed) keys, and `SeededDataset` reseeds torch, numpy and python from
the key's seed before loading the sample, so each sample's augmentation depends only on
(seed, epoch, index): not on which worker loads it, nor on what was loaded before. A resumed
run therefore sees exactly the batches the uninterrupted run would have seen.
"""

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from ..runtime import derive_seed
from .wrapped import Wrapped


class ResumableSampler(DistributedSampler):
    def __init__(
        self, dataset: Dataset, *, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1
    ) -> None:
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
        self.start = 0  # samples of this rank's share already consumed in the current epoch

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Epoch (1-based, as the run counts them) and the samples of it already done."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in list(super().__iter__())[self.start :]:
            yield index, derive_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return self.num_samples - self.start


class SeededDataset(Wrapped):
    """Loads `dataset[index]` for a key (index, seed) after seeding every random source."""

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        return self.dataset[index]
