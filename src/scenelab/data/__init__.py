"""Data sources behind one entry point: synthetic scenes, MiniPlaces list files, ImageFolder.

Every dataset yields float images in [0, 1] (normalisation is the model's first layer) and
integer labels; `with_masks=True` adds object masks where the source has them.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..config import DataConfig
from ..runtime import seed_worker
from .cache import cache_images
from .decode import DatasetError, SkipBadImages, collate_present
from .folder import image_folder
from .miniplaces import MiniPlaces
from .sampling import ResumableSampler, SeededDataset, ShardSampler
from .synthetic import SyntheticScenes
from .transforms import eval_transform, resize_size, train_transform

__all__ = ["DatasetError", "build_dataset", "build_datasets", "build_loader", "check_classes"]


def _require_root(cfg: DataConfig) -> str:
    if not cfg.data_root:
        raise DatasetError(f"--data {cfg.data} needs --data-root PATH (the dataset's folder)")
    return cfg.data_root


def build_dataset(
    cfg: DataConfig,
    split: str,
    *,
    augment: bool = False,
    with_masks: bool = False,
    bad_images: Path | None = None,
) -> tuple[Dataset, list[str]]:
    """One split and its class names; `augment` picks the train preset, else the eval preset.
    With `cfg.on_bad_image == "skip"`, unreadable images are left out of their batch and their
    paths appended to the file `bad_images`."""
    size = cfg.resolved_image_size
    if augment:
        transform = train_transform(size, cfg.augment, batched=cfg.batch_augment)
    else:
        transform = eval_transform(size)
    if cfg.data == "synthetic":
        count = cfg.synth_train if split == "train" else cfg.synth_val
        dataset = SyntheticScenes(
            count,
            size,
            num_classes=cfg.synth_classes,
            seed=cfg.synth_seed,
            split=split,
            transform=transform,
            with_masks=with_masks,
        )
    elif cfg.data == "miniplaces":
        dataset = MiniPlaces(
            _require_root(cfg),
            split,
            transform=transform,
            with_masks=with_masks,
            max_pixels=cfg.max_image_pixels,
        )
    elif cfg.data == "folder":
        if with_masks:
            raise DatasetError(
                "folder datasets have no object masks; use the synthetic scenes or a "
                "MiniPlaces-layout root with masks/ (scenelab data synth writes one)"
            )
        dataset = image_folder(_require_root(cfg), split, transform, cfg.max_image_pixels)
    else:
        raise DatasetError(f"unknown data source {cfg.data!r}")
    if len(dataset) == 0:  # an empty split would "train" to loss 0 and accuracy 0
        flag = "--synth-train/--synth-val" if cfg.data == "synthetic" else "--data-root"
        raise DatasetError(f"the {split} split of the {cfg.data} data has no images; check {flag}")
    classes = list(dataset.classes)
    if cfg.cache_images:
        cache_images(dataset, resize_size(size))
    if cfg.on_bad_image == "skip":
        dataset = SkipBadImages(dataset, bad_images)
    if cfg.limit and split != "train" and cfg.limit < len(dataset):
        dataset = Subset(dataset, range(cfg.limit))
    return dataset, classes


def check_classes(data_classes: list[str], trained_classes: list[str], source: str) -> None:
    """Refuse data whose class list differs from the one a model was trained on."""
    if data_classes != trained_classes:
        raise DatasetError(
            f"the {source} data has {len(data_classes)} classes that differ from the "
            f"checkpoint's {len(trained_classes)}; use data with the classes it was trained on"
        )


def build_datasets(
    cfg: DataConfig, bad_images: Path | None = None
) -> tuple[Dataset, Dataset, list[str]]:
    """(augmented train split, eval-transformed val split, class names)."""
    train, classes = build_dataset(cfg, "train", augment=True, bad_images=bad_images)
    val, val_classes = build_dataset(cfg, "val", bad_images=bad_images)
    if val_classes != classes:
        raise DatasetError(
            f"train and val have different classes ({len(classes)} vs {len(val_classes)}; "
            f"first difference: {next(iter(set(classes) ^ set(val_classes)), '?')})"
        )
    return train, val, classes


def build_loader(
    dataset: Dataset,
    cfg: DataConfig,
    *,
    train: bool,
    device: torch.device,
    seed: int = 0,
    generator: torch.Generator | None = None,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """An ordered loader, or for training a shuffled one that can resume part-way through an
    epoch: its `ResumableSampler` draws each epoch's order and every sample's augmentation
    from (seed, epoch, index). Call `loader.sampler.set_epoch(epoch)` before each epoch (as
    `fit` does), as with torch's DistributedSampler. `generator` seeds the workers.

    Evaluation batches hold `cfg.val_batch_size` images when set, else `cfg.batch_size`.
    In DDP (`world` > 1), the batch size is the global batch: each process loads its
    1/world share of it, from its share of the split (`ShardSampler` for evaluation)."""
    batch_size, flag = cfg.batch_size, "--batch-size"
    if not train and cfg.val_batch_size:
        batch_size, flag = cfg.val_batch_size, "--val-batch-size"
    if batch_size % world:
        raise ValueError(
            f"{flag} {batch_size} is the global batch and must divide evenly among "
            f"the {world} processes; use a multiple of {world}"
        )
    sampler = None
    if train:
        sampler = ResumableSampler(dataset, seed=seed, rank=rank, world=world)
        dataset = SeededDataset(dataset)
    elif world > 1:
        sampler = ShardSampler(len(dataset), rank=rank, world=world)
    return DataLoader(
        dataset,
        batch_size=batch_size // world,
        sampler=sampler,
        collate_fn=collate_present,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,  # no new worker processes every epoch
        pin_memory=device.type == "cuda",
        generator=generator,
        worker_init_fn=seed_worker,
    )


def fixed_subset(dataset: Dataset, size: int, seed: int = 0) -> Dataset:
    """A fixed random `size` of `dataset`'s items, in their order (all of it when `size` is 0
    or larger): random, so a split stored class by class, or cycling through the classes, still
    gives every class about its share; fixed by `seed`, so every epoch sees the same items."""
    if not 0 < size < len(dataset):
        return dataset
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randperm(len(dataset), generator=generator)[:size].sort().values
    return Subset(dataset, indices.tolist())


@dataclass(frozen=True)
class Loaders:
    """The loaders of a run, in DDP this process's shares: training; validation; the fixed
    validation subset that every epoch but the last is validated on (None: the whole split);
    and the one whose robust accuracy every epoch measures (None: not measured)."""

    train: DataLoader
    val: DataLoader
    val_subset: DataLoader | None = None
    robust: DataLoader | None = None

    def val_after(self, epoch: int, epochs: int) -> DataLoader:
        """The validation loader of `epoch` of `epochs`: the whole split after the last."""
        return self.val if epoch >= epochs or self.val_subset is None else self.val_subset
