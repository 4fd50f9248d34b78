"""Procedural synthetic scenes with ground-truth object masks: no download, deterministic by seed.

Ten scene classes drawn from simple shapes over randomised skies, grounds and textures. Each
image is a pure function of (seed, split, index), so image 7 is the same whatever the dataset
size and on every machine. The class-defining objects (boats, trees, cacti, buildings, ...) come
with a pixel mask, which later steps use to score saliency maps. Sky and ground colours are drawn
from palettes shared by the classes (snowy forests, cities at night, a desert on grass), so a
model must look at the objects and the layout, not at one colour. The drawing is in
`scene_painters` (one painter per class) and `scene_canvas` (shapes, sky and ground); this module
turns it into images, labels and masks by index, and a Dataset.
"""

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from .scene_painters import CLASSES, render_scene

SPLITS = {"train": 0, "val": 1, "test": 2}


def _check(num_classes: int, size: int) -> None:
    if not 1 <= num_classes <= len(CLASSES):
        raise ValueError(f"synthetic scenes have 1 to {len(CLASSES)} classes, got {num_classes}")
    if size < 16:
        raise ValueError(f"synthetic scenes need an image size of at least 16 pixels, got {size}")


def iter_scenes(
    num_images: int, size: int, num_classes: int = 10, seed: int = 0, split: str = "train"
) -> Iterator[tuple[torch.Tensor, int, torch.Tensor]]:
    """Yield (image (3, S, S) uint8, label, mask (S, S) bool) for i in range(num_images).

    Image i has label i % num_classes and depends only on (seed, split, i).
    """
    _check(num_classes, size)
    for i in range(num_images):
        label = i % num_classes
        image, mask = render_scene(label, size, np.random.default_rng([seed, SPLITS[split], i]))
        yield torch.from_numpy(image).permute(2, 0, 1), label, torch.from_numpy(mask)


def generate(
    num_images: int, size: int, num_classes: int = 10, seed: int = 0, split: str = "train"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All of `iter_scenes` stacked: images (N, 3, S, S) uint8, labels (N,), masks (N, S, S)."""
    _check(num_classes, size)
    images = torch.empty(num_images, 3, size, size, dtype=torch.uint8)
    masks = torch.empty(num_images, size, size, dtype=torch.bool)
    labels = torch.arange(num_images) % num_classes
    for i, (image, _, mask) in enumerate(iter_scenes(num_images, size, num_classes, seed, split)):
        images[i], masks[i] = image, mask
    return images, labels, masks


class SyntheticScenes(Dataset):
    """Synthetic scenes generated once and kept in memory (uint8), transformed per access.

    Yields (image, label), or (image, label, mask) with `with_masks=True`; the transform is
    applied to image and mask together, so geometric augmentation keeps them aligned.
    """

    def __init__(
        self,
        num_images: int,
        image_size: int,
        *,
        num_classes: int = 10,
        seed: int = 0,
        split: str = "train",
        transform=None,
        with_masks: bool = False,
    ) -> None:
        self.images, self.labels, self.masks = generate(
            num_images, image_size, num_classes, seed, split
        )
        self.classes = list(CLASSES[:num_classes])
        self.transform, self.with_masks = transform, with_masks

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image, label = tv_tensors.Image(self.images[i]), int(self.labels[i])
        if not self.with_masks:
            return (self.transform(image) if self.transform else image), label
        mask = tv_tensors.Mask(self.masks[i])
        if self.transform:
            image, mask = self.transform(image, mask)
        return image, label, mask
