"""Reading image files into uint8 RGB tensors, with errors that name the file."""

from pathlib import Path

import torch
from torchvision import io


class DatasetError(ValueError):
    """A dataset on disk is malformed: the message says what, where, and what to do."""


def decode_rgb(path: str | Path) -> torch.Tensor:
    """Decode a JPEG/PNG/... file to a uint8 (3, H, W) tensor; grayscale and CMYK become RGB."""
    try:
        data = io.read_file(str(path))
        return io.decode_image(data, mode=io.ImageReadMode.RGB)
    except (RuntimeError, OSError, ValueError) as e:
        raise DatasetError(
            f"cannot decode image {path}: {e}. The file is corrupt, truncated or not an image; "
            "replace it or remove its line from the list file."
        ) from None


def decode_mask(path: str | Path) -> torch.Tensor:
    """Decode a mask PNG to a bool (H, W) tensor (non-zero = object)."""
    try:
        return io.decode_image(io.read_file(str(path)), mode=io.ImageReadMode.GRAY)[0] > 0
    except (RuntimeError, OSError, ValueError) as e:
        raise DatasetError(f"cannot decode mask {path}: {e}") from None
