"""Train and eval presets (torchvision transforms v2), matching the course recipe.

Sizes scale with the target size S (the course used S = 128 and a resize to 144 = 1.125 S):
- course (the course template's): resize shorter side to 1.125 S, horizontal flip, rotation
  within +-15 degrees and the crop of the largest rectangle free of its black corners, random
  resized crop of that to S (area 25-100%, aspect 0.8-1.2), then per-channel colour scaling
  within +-15%;
- course-borders: the same without the border-free crop (the resized crop may take in the
  rotation's black corners);
- light (for runs of a few epochs, where the course's strong augmentation costs more accuracy than
  it saves from overfitting): resize to 1.125 S, random crop S, horizontal flip;
- none: the eval preset;
- eval: resize shorter side to 1.125 S, centre crop S.
Geometry runs on uint8 (cheaper) and the float conversion comes last; both yield float images in
[0, 1]. Masks passed alongside an image get the same geometry and keep their dtype.

`train_transform(..., batched=True)` keeps only the resize per image and defers the rest to one
warp per batch (batched.py); the loader's collate function finishes the batch.
"""

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF
from torchvision.transforms.v2._utils import is_pure_tensor, query_size

from .batched import ROTATION, Stage, border_free_box


class ChannelScale(v2.Transform):
    """Multiply each colour channel by its own factor in [1 - amount, 1 + amount], clamp to [0, 1].

    Scaling commutes with the geometric transforms (their fill is 0), so it can run last, on
    float images.
    """

    _transformed_types = (tv_tensors.Image, is_pure_tensor)

    def __init__(self, amount: float = 0.15) -> None:
        super().__init__()
        self.amount = amount

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        factors = torch.empty(3).uniform_(1 - self.amount, 1 + self.amount)
        return {"factors": factors}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not inpt.is_floating_point():
            raise TypeError("ChannelScale expects float images in [0, 1]; put it after ToDtype")
        factors = params["factors"].to(inpt.device, inpt.dtype).view(-1, 1, 1)
        return (inpt * factors).clamp_(0, 1)


class RotateCropBorders(v2.Transform):
    """Rotate by a random angle within +-`degrees` (as `v2.RandomRotation`), then crop the
    largest centred rectangle that holds no fill: the course template's rotation."""

    def __init__(self, degrees: float = ROTATION) -> None:
        super().__init__()
        self.degrees = degrees

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = query_size(flat_inputs)
        angle = torch.empty(1).uniform_(-self.degrees, self.degrees).item()
        _, _, h, w = border_free_box(height, width, angle)
        return {"angle": angle, "size": [h, w]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        rotated = self._call_kernel(TF.rotate, inpt, angle=params["angle"])
        return self._call_kernel(TF.center_crop, rotated, output_size=params["size"])


def resize_size(size: int) -> int:
    """The shorter side before cropping: 144 for 128, as in the course."""
    return round(size * 144 / 128)


def train_transform(size: int, preset: str = "course", *, batched: bool = False):
    if preset == "none":
        return eval_transform(size)
    if batched and preset in ("course", "course-borders", "light"):
        return Stage(size, preset, resize_size(size))
    if preset == "light":
        return v2.Compose(
            [
                v2.Resize(resize_size(size), antialias=True),
                v2.RandomCrop(size),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
            ]
        )
    if preset not in ("course", "course-borders"):
        raise ValueError(
            f"unknown augmentation preset {preset!r}: use course, course-borders, light or none"
        )
    rotation = v2.RandomRotation(ROTATION) if preset == "course-borders" else RotateCropBorders()
    return v2.Compose(
        [
            v2.Resize(resize_size(size), antialias=True),
            v2.RandomHorizontalFlip(),
            rotation,
            v2.RandomResizedCrop(size, scale=(0.25, 1.0), ratio=(0.8, 1.2), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            ChannelScale(0.15),
        ]
    )


def eval_transform(size: int) -> v2.Compose:
    return v2.Compose(
        [
            v2.Resize(resize_size(size), antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )
