"""Plain ImageFolder trees: root/train/<class>/*.jpg and root/val/<class>/*.jpg (torchvision)."""

from functools import partial
from pathlib import Path

from torchvision import tv_tensors
from torchvision.datasets import ImageFolder

from ..config import MAX_IMAGE_PIXELS
from .decode import DatasetError, decode_rgb


def _load(path: str, max_pixels: int = MAX_IMAGE_PIXELS) -> tv_tensors.Image:
    return tv_tensors.Image(decode_rgb(path, max_pixels))


def image_folder(
    root: str | Path, split: str, transform=None, max_pixels: int = MAX_IMAGE_PIXELS
) -> ImageFolder:
    """torchvision's ImageFolder over root/split, decoding with torchvision.io (images of more
    than `max_pixels` refused from their header)."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise DatasetError(
            f"{folder} not found: a folder dataset needs {Path(root)}/train/<class>/<images> and "
            f"{Path(root)}/val/<class>/<images> (pass the parent of train/ and val/ as --data-root)"
        )
    try:
        dataset = ImageFolder(
            str(folder), transform=transform, loader=partial(_load, max_pixels=max_pixels)
        )
    except FileNotFoundError as e:  # no class folders, or no images in them
        raise DatasetError(
            f"{folder}: {e} A folder dataset needs one folder per class holding its images: "
            f"{Path(root)}/train/<class>/<images> and {Path(root)}/val/<class>/<images>."
        ) from None
    dataset.max_pixels = max_pixels  # for cache_images
    return dataset
