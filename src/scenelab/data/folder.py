"""Plain ImageFolder trees: root/train/<class>/*.jpg and root/val/<class>/*.jpg (torchvision)."""

from pathlib import Path

from torchvision import tv_tensors
from torchvision.datasets import ImageFolder

from .decode import DatasetError, decode_rgb


def _load(path: str) -> tv_tensors.Image:
    return tv_tensors.Image(decode_rgb(path))


def image_folder(root: str | Path, split: str, transform=None) -> ImageFolder:
    """torchvision's ImageFolder over root/split, decoding with torchvision.io."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise DatasetError(
            f"{folder} not found: a folder dataset needs {Path(root)}/train/<class>/<images> and "
            f"{Path(root)}/val/<class>/<images> (pass the parent of train/ and val/ as --data-root)"
        )
    try:
        return ImageFolder(str(folder), transform=transform, loader=_load)
    except FileNotFoundError as e:
        raise DatasetError(f"{folder}: {e}") from None
