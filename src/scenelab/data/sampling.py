"""Training order and augmentation that a run can stop and resume at any step, alone or in DDP.

`ResumableSampler` is torch's `DistributedSampler` (the epoch's order comes from (seed, epoch)
and is split across ranks; one process is rank 0 of 1) that can also start part-way through an
epoch. It yields (index, seed) keys, and `SeededDataset` reseeds torch, numpy and python from
the key's seed before loading the sample, so each sample's augmentation depends only on
(seed, epoch, index): not on which worker loads it, nor on what was loaded before. A resumed
run therefore sees exactly the batches the uninterrupted run would have seen.

Because a DistributedSampler deals the epoch's order out to the ranks in turn, the b-th batches
of all ranks together hold exactly the samples of the b-th batch of one process with the global
batch size: a DDP run trains on the same batches as a single process (see `build_loader`).
`ShardSampler` splits an evaluation split among the ranks without padding, so reduced metrics
count every image once.
"""

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

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
        # The CPU generator only: torch.manual_seed also seeds every accelerator, and where
        # CUDA is built in but not initialised it records a stack trace per call (about 1 ms).
        torch.default_generator.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        return self.dataset[index]


class ShardSampler(Sampler[int]):
    """Rank `rank`'s share of `size` indices, in order: every `world`-th from `rank` (no padding,
    unlike DistributedSampler, so the shares together hold each index exactly once)."""

    def __init__(self, size: int, *, rank: int, world: int) -> None:
        self.indices = range(rank, size, world)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
