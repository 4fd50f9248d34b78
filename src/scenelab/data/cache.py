"""`--cache-images`: decode every image once and keep it in memory, so an epoch only augments.

Each image is stored as uint8, already shrunk as the transforms would first resize it (the
shorter side to 1.125 x the training size; smaller images are kept as they are and enlarged
by the transforms); that resize then finds nothing to do, so a cached run sees exactly the
tensors an uncached one would. The 20,000 + 10,000 images of the sample at
64 px (72 px stored) take about 470 MB; at 128 px (144 px stored) about 1.9 GB.
"""

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.datasets import ImageFolder
from torchvision.transforms.v2 import functional as F

from ..config import MAX_IMAGE_PIXELS
from .decode import BadImage, decode_rgb
from .miniplaces import MiniPlaces


def _decode(path: Path, size: int, max_pixels: int) -> torch.Tensor | BadImage:
    try:
        image = decode_rgb(path, max_pixels)
        if min(image.shape[-2:]) <= size:  # enlarged by the transforms, as uncached
            return image
        return F.resize(image, [size], antialias=True)
    except BadImage as e:
        return e  # raised when the sample is read (or skipped with --on-bad-image skip)


def decode_all(
    paths: list[Path], size: int, threads: int, max_pixels: int = MAX_IMAGE_PIXELS
) -> list[torch.Tensor | BadImage]:
    """Every image decoded and resized (shorter side `size`), in parallel over `threads`; an
    image that cannot be decoded is its BadImage error, raised when the sample is read.

    Threads, not worker processes: decoding and resizing release the GIL, and a thread's tensor
    needs no copy out of shared memory (2x faster than a DataLoader's workers on 2 cores)."""
    with ThreadPoolExecutor(max(threads, 1)) as pool:
        return list(pool.map(partial(_decode, size=size, max_pixels=max_pixels), paths))


class _CachedLoader:
    """ImageFolder's `loader`: the cached tensor of a path."""

    def __init__(self, images: dict[str, torch.Tensor | BadImage]) -> None:
        self.images = images

    def __call__(self, path: str) -> tv_tensors.Image:
        image = self.images[path]
        if isinstance(image, BadImage):
            raise image.with_traceback(None)  # a fresh traceback at each read
        return tv_tensors.Image(image)


def cache_images(dataset: Dataset, size: int, *, limit: int = 0) -> None:
    """Decode the images of a MiniPlaces or ImageFolder dataset into memory (in place), on as
    many threads as torch computes with; other sources already hold theirs. `limit` > 0 keeps
    only the first `limit` images (benchmarks that time a few batches need not decode a whole
    split)."""
    threads = torch.get_num_threads()
    max_pixels = getattr(dataset, "max_pixels", MAX_IMAGE_PIXELS)
    if isinstance(dataset, MiniPlaces):
        if limit:
            dataset.entries, dataset.targets = dataset.entries[:limit], dataset.targets[:limit]
        paths = [dataset.image_path(e) for e in dataset.entries]
        dataset.cache = decode_all(paths, size, threads, max_pixels)
    elif isinstance(dataset, ImageFolder):
        if limit:
            dataset.samples = dataset.imgs = dataset.samples[:limit]
            dataset.targets = dataset.targets[:limit]
        paths = [path for path, _ in dataset.samples]
        images = dict(zip(paths, decode_all(paths, size, threads, max_pixels), strict=True))
        dataset.loader = _CachedLoader(images)
