"""`--cache-images`: decode every image once and keep it in memory, so an epoch only augments.

Each image is stored as uint8, already shrunk as the transforms would first resize it (the
shorter side to 1.125 x the training size; smaller images are kept as they are and enlarged
by the transforms); that resize then finds nothing to do, so a cached run sees exactly the
tensors an uncached one would. The 20,000 + 10,000 images of the sample at
64 px (72 px stored) take about 470 MB; at 128 px (144 px stored) about 1.9 GB.
"""

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.datasets import ImageFolder
from torchvision.transforms.v2 import functional as F

from .decode import UNCACHED, BadImage, decode_rgb
from .miniplaces import MiniPlaces


class _Decode(Dataset):
    def __init__(self, paths: list[Path], size: int) -> None:
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor | None:
        try:
            image = decode_rgb(self.paths[i])
            if min(image.shape[-2:]) <= self.size:  # enlarged by the transforms, as uncached
                return image
            return F.resize(image, [self.size], antialias=True)
        except BadImage:
            return None  # raised again, with its path, when the sample is read


def decode_all(paths: list[Path], size: int, workers: int) -> list[torch.Tensor | None]:
    """Every image decoded and resized (shorter side `size`), in parallel over `workers`."""
    loader = DataLoader(_Decode(paths, size), batch_size=64, num_workers=workers, collate_fn=list)
    # clone: a tensor from a worker lives in its own shared-memory segment until freed
    return [None if t is None else t.clone() for batch in loader for t in batch]


class _CachedLoader:
    """ImageFolder's `loader`: the cached tensor of a path."""

    def __init__(self, images: dict[str, torch.Tensor | None]) -> None:
        self.images = images

    def __call__(self, path: str) -> tv_tensors.Image:
        image = self.images[path]
        if image is None:
            raise BadImage(path, UNCACHED)
        return tv_tensors.Image(image)


def cache_images(dataset: Dataset, size: int, workers: int, *, limit: int = 0) -> None:
    """Decode the images of a MiniPlaces or ImageFolder dataset into memory (in place); other
    sources already hold theirs. `limit` > 0 keeps only the first `limit` images (benchmarks
    that time a few batches need not decode a whole split)."""
    if isinstance(dataset, MiniPlaces):
        if limit:
            dataset.entries, dataset.targets = dataset.entries[:limit], dataset.targets[:limit]
        dataset.cache = decode_all([dataset.image_path(e) for e in dataset.entries], size, workers)
    elif isinstance(dataset, ImageFolder):
        if limit:
            dataset.samples = dataset.imgs = dataset.samples[:limit]
            dataset.targets = dataset.targets[:limit]
        paths = [path for path, _ in dataset.samples]
        images = dict(zip(paths, decode_all(paths, size, workers), strict=True))
        dataset.loader = _CachedLoader(images)
