"""Batched augmentation (`--batch-augment`, the default): the training presets as one warp a batch.

Per image, only the cheap part runs: drawing the random parameters (flip, rotation, resized-crop box
within the rotation's border-free rectangle and colour factors of the course preset; the same with
the box anywhere in the rotated image for course-borders; crop offsets and flip of the light one)
and, when the image must shrink, its antialiased resize to 1.125 x the size (nothing for
`--cache-images`, which stores them resized; an enlargement folds into the warp). The parameters
compose into one affine map from output to input pixels, and the whole batch is warped at once
(`grid_sample`, bilinear), converted to float, colour-scaled and clamped. Three resamplings per
image (resize, rotation, resized crop) become one vectorised resampling per batch: ten times less
work at 64 px, and the loader no longer competes with the model for the CPU (`scenelab bench data`).

Outside the image is zero for the course presets (as torchvision's rotation fills; the course
preset's boxes stay clear of it) and the nearest edge pixel for the light one. The parameters are
drawn with python's generator (a few microseconds, where torch's scalar draws cost tens), which
`SeededDataset` seeds per sample from (seed, epoch, index), so a resumed run sees the same
augmentation. The light preset of an image already at its resized size is a whole-pixel shift, so
its warp copies pixels exactly; the course preset resamples once (bilinear) where torchvision
resamples twice (nearest rotation, then bilinear crop): the same distribution of images, not the
same pixels.
"""

import math
import random
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

# The course preset's ranges (see transforms.py).
ROTATION, CROP_SCALE, CROP_RATIO, COLOUR = 15.0, (0.25, 1.0), (0.8, 1.2), 0.15


class Staged(NamedTuple):
    """A training image waiting for its batch: uint8 pixels (C, H, W), the affine map (2, 3)
    from output pixel coordinates to its own, and per-channel colour factors (C,)."""

    image: Tensor
    matrix: Tensor
    factors: Tensor
    size: int
    padding: str = "zeros"  # what lies outside the image: zeros (rotation's fill) or border


def affine_matrix(
    height: int,
    width: int,
    size: int,
    *,
    flip: bool = False,
    angle: float = 0.0,
    box: tuple[float, float, float, float] | None = None,
) -> Tensor:
    """(2, 3) float64 map from a `size` x `size` output's pixel coordinates (pixel k spans
    [k, k + 1)) to the input's: the crop `box` (top, left, height, width; default the whole
    image) of the image rotated by `angle` degrees counter-clockwise about its centre, after a
    horizontal flip when `flip` (torchvision's order: flip, rotate, crop)."""
    top, left, h, w = box if box is not None else (0.0, 0.0, float(height), float(width))
    cx, cy = width / 2, height / 2
    # The output point q shows the input at c + R (q - c), R the rotation by -angle on screen
    # (y points down), which turns the picture counter-clockwise; q itself is the crop's
    # point (left + u w / size, top + v h / size). Composed by hand: plain floats are ten
    # times faster than 3 x 3 tensor products for one image.
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    sx, sy = w / size, h / size
    rows = [
        [cos * sx, -sin * sy, cos * (left - cx) - sin * (top - cy) + cx],
        [sin * sx, cos * sy, sin * (left - cx) + cos * (top - cy) + cy],
    ]
    if flip:  # x -> width - x
        rows[0] = [-rows[0][0], -rows[0][1], width - rows[0][2]]
    return torch.tensor(rows, dtype=torch.float64)


def largest_rotated_rect(height: float, width: float, angle: float) -> tuple[float, float]:
    """Height and width of the largest axis-aligned rectangle, centred, inside a `height` x
    `width` image rotated by `angle` degrees about its centre: the crop with no fill."""
    if not (height > 0 and width > 0):
        return 0.0, 0.0
    sin, cos = abs(math.sin(math.radians(angle))), abs(math.cos(math.radians(angle)))
    long, short = max(height, width), min(height, width)
    if short <= 2 * sin * cos * long or abs(sin - cos) < 1e-10:
        # half constrained: two corners of the rectangle touch the longer sides
        x = short / 2
        return (x / cos, x / sin) if width >= height else (x / sin, x / cos)
    cos_2a = cos * cos - sin * sin  # fully constrained: all four corners on the sides
    return (height * cos - width * sin) / cos_2a, (width * cos - height * sin) / cos_2a


def border_free_box(height: int, width: int, angle: float) -> tuple[float, float, int, int]:
    """The centred whole-pixel box (top, left, height, width) of `largest_rotated_rect`."""
    h, w = (max(1, math.floor(v)) for v in largest_rotated_rect(height, width, angle))
    return (height - h) / 2, (width - w) / 2, h, w


def resized_crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (top, left, height, width) with the course's scale and ratio
    ranges: torchvision's algorithm, drawn with python's generator (a tenth of the cost)."""
    area = height * width
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(10):
        target = area * random.uniform(*CROP_SCALE)
        aspect = math.exp(random.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return random.randint(0, height - h), random.randint(0, width - w), h, w
    ratio = width / height  # fallback: the largest centred box within the ratio range
    w, h = width, height
    if ratio < CROP_RATIO[0]:
        h = round(w / CROP_RATIO[0])
    elif ratio > CROP_RATIO[1]:
        w = round(h * CROP_RATIO[1])
    return (height - h) // 2, (width - w) // 2, h, w


def stage_course(
    image: Tensor, size: int, shape: tuple[int, int], *, borders: bool = False
) -> Staged:
    """The course preset's random parameters for one uint8 image resized to `shape`: the
    resized-crop box drawn within the rotated image's border-free rectangle (`borders`: within
    the whole rotated image, fill included)."""
    height, width = shape
    flip = random.random() < 0.5
    angle = random.uniform(-ROTATION, ROTATION)
    if borders:
        box = resized_crop_box(height, width)
    else:
        top, left, h, w = border_free_box(height, width, angle)
        inner_top, inner_left, box_h, box_w = resized_crop_box(h, w)
        box = (top + inner_top, left + inner_left, box_h, box_w)
    factors = torch.tensor([random.uniform(1 - COLOUR, 1 + COLOUR) for _ in range(image.shape[0])])
    matrix = affine_matrix(height, width, size, flip=flip, angle=angle, box=box)
    return Staged(image, matrix, factors, size)


def stage_light(image: Tensor, size: int, shape: tuple[int, int]) -> Staged:
    """The light preset's: a random whole-pixel crop of `size` and a horizontal flip."""
    height, width = shape
    top, left = random.randint(0, height - size), random.randint(0, width - size)
    flip = random.random() < 0.5
    # Cropping at `left`, then flipping the crop (torchvision's light preset) is flipping the
    # image, then cropping at the mirrored offset.
    box = (top, width - left - size if flip else left, size, size)
    matrix = affine_matrix(height, width, size, flip=flip, box=box)
    # border: an enlarged image's edge pixels stay as they are (no rotation fills anything)
    return Staged(image, matrix, torch.ones(image.shape[0]), size, "border")


class Stage:
    """The per-image half of a batched preset: `Stage(size, "course", resize)(uint8 image)`
    resizes the shorter side to `resize` (when it is not already, as cached images are) and
    draws the image's parameters."""

    def __init__(self, size: int, preset: str, resize: int) -> None:
        self.size, self.resize = size, resize
        self.draw = {
            "course": stage_course,
            "course-borders": partial(stage_course, borders=True),
            "light": stage_light,
        }[preset]

    def __call__(self, image: Tensor) -> Staged:
        if image.dtype != torch.uint8:
            raise TypeError(f"batched augmentation expects uint8 images, got {image.dtype}")
        image = image.as_subclass(Tensor)
        height, width = image.shape[-2:]
        if min(height, width) > self.resize:  # shrinking needs antialiasing: resize it here
            image = TF.resize(image, [self.resize], antialias=True)
            height, width = image.shape[-2:]
        # Enlarging (or nothing, for cached images) folds into the warp: the parameters are
        # drawn for the resized image, and its coordinates scaled back to the image's own.
        scale = self.resize / min(height, width)
        resized = (round(height * scale), round(width * scale))
        staged = self.draw(image, self.size, resized)
        if scale == 1:
            return staged
        to_image = torch.tensor([[width / resized[1]], [height / resized[0]]], dtype=torch.float64)
        return staged._replace(matrix=staged.matrix * to_image)


def warp(staged: list[Staged]) -> Tensor:
    """The batch of float images in [0, 1] (B, C, size, size) that `staged` describe."""
    size = staged[0].size
    height = max(s.image.shape[-2] for s in staged)
    width = max(s.image.shape[-1] for s in staged)
    if all(s.image.shape[-2:] == (height, width) for s in staged):
        images = torch.stack([s.image for s in staged]).float()
    else:  # pad at the bottom right with zeros, which is what lies outside an image
        images = torch.zeros(len(staged), staged[0].image.shape[0], height, width)
        for out, s in zip(images, staged, strict=True):
            out[:, : s.image.shape[-2], : s.image.shape[-1]] = s.image
    # Each map in grid_sample's normalised coordinates (-1 and 1 at the outer edges): output
    # (-1..1) -> output pixels (0..size) -> input pixels (the matrix) -> input (-1..1).
    matrices = torch.stack([s.matrix for s in staged])  # (B, 2, 3)
    from_output = torch.tensor(
        [[size / 2, 0, size / 2], [0, size / 2, size / 2], [0, 0, 1]], dtype=torch.float64
    )
    theta = matrices @ from_output * torch.tensor([[2 / width], [2 / height]], dtype=torch.float64)
    theta[:, :, 2] -= 1
    # affine_grid's result by one broadcast product (three times faster on the CPU), in float64
    # so that an image's grid does not depend on the batch it is in (float32 products differ
    # in the last bit between batch sizes, and DDP splits batches)
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) * 2 / size - 1
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    points = torch.stack([u, v, torch.ones_like(u)], -1).view(-1, 3)  # (S*S, 3)
    grid = torch.matmul(points, theta.transpose(1, 2)).float().view(len(staged), size, size, 2)
    out = F.grid_sample(
        images, grid, mode="bilinear", padding_mode=staged[0].padding, align_corners=False
    )
    factors = torch.stack([s.factors for s in staged])[:, :, None, None] / 255
    return (out * factors).clamp_(0, 1)
