"""Batched augmentation against torchvision applying the same parameters image by image."""

import itertools
import math
import random

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from scenelab.config import DataConfig
from scenelab.data import build_dataset, build_loader
from scenelab.data.batched import (
    CROP_RATIO,
    CROP_SCALE,
    Stage,
    Staged,
    affine_matrix,
    largest_rotated_rect,
    resized_crop_box,
    warp,
)
from scenelab.data.transforms import train_transform

BILINEAR = InterpolationMode.BILINEAR


def _smooth_image(size: int = 72, seed: int = 0) -> torch.Tensor:
    """A uint8 image without sharp edges, so interpolation differences stay small."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 9, 9, generator=g)
    return (F.interpolate(coarse, size=(size, size), mode="bilinear")[0] * 255).round().byte()


def _warp_one(image: torch.Tensor, size: int, **params) -> torch.Tensor:
    height, width = image.shape[-2:]
    matrix = affine_matrix(height, width, size, **params)
    return warp([Staged(image, matrix, torch.ones(3), size)])[0]


@pytest.mark.parametrize("angle", [10.0, -30.0, 90.0])
def test_rotation_matches_torchvision(angle):
    image = _smooth_image()
    expected = TF.rotate(image.float() / 255, angle, interpolation=BILINEAR)
    assert torch.allclose(_warp_one(image, 72, angle=angle), expected, atol=1e-4)


def test_flip_is_exact():
    image = _smooth_image()
    assert torch.allclose(
        _warp_one(image, 72, flip=True), TF.horizontal_flip(image) / 255, atol=1e-5
    )


def test_resized_crop_matches_torchvision_inside_the_box():
    image, box = _smooth_image(), (5, 7, 40, 50)
    expected = TF.resized_crop(
        image.float() / 255, *box, [64, 64], interpolation=BILINEAR, antialias=False
    )
    ours = _warp_one(image, 64, box=box)
    # torchvision clamps at the box's edges, the warp reads the image beyond them
    assert torch.allclose(ours[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], atol=1e-5)


def test_flip_rotate_crop_compose_in_torchvision_order():
    image, box = _smooth_image(), (8, 4, 48, 56)
    expected = TF.horizontal_flip(image.float() / 255)
    expected = TF.rotate(expected, 90.0, interpolation=BILINEAR)  # exact on a square image
    expected = TF.resized_crop(expected, *box, [64, 64], interpolation=BILINEAR, antialias=False)
    ours = _warp_one(image, 64, flip=True, angle=90.0, box=box)
    assert torch.allclose(ours[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], atol=1e-4)


def _matches_a_crop(out: torch.Tensor, reference: torch.Tensor, size: int, atol: float) -> bool:
    """Whether `out` is one of the `size` crops of `reference`, flipped or not."""
    height, width = reference.shape[-2:]
    for top, left, flip in itertools.product(
        range(height - size + 1), range(width - size + 1), (False, True)
    ):
        crop = reference[:, top : top + size, left : left + size]
        if torch.allclose(out, TF.horizontal_flip(crop) if flip else crop, atol=atol):
            return True
    return False


def test_the_light_preset_of_a_cached_image_is_an_exact_crop_and_flip():
    image, stage = _smooth_image(), Stage(64, "light", 72)
    for seed in range(6):
        random.seed(seed)
        out = warp([stage(image)])[0]
        assert _matches_a_crop(out, image.float() / 255, 64, atol=1e-5)


def test_an_enlargement_folds_into_the_warp():
    image, stage = _smooth_image(32), Stage(32, "light", 36)  # 32 px shown at 36 first
    staged = stage(image)
    assert staged.image.shape[-2:] == (32, 32)  # not resized per image
    resized = TF.resize(image.float() / 255, [36], interpolation=BILINEAR, antialias=False)
    assert _matches_a_crop(warp([staged])[0], resized, 32, atol=1e-4)


def test_a_shrinking_image_is_resized_with_antialiasing_first():
    staged = Stage(64, "course", 72)(_smooth_image(128))
    expected = TF.resize(_smooth_image(128), [72], antialias=True)
    assert torch.equal(staged.image, expected)


def test_images_of_different_sizes_share_a_batch():
    a = Staged(_smooth_image(72, 1), affine_matrix(72, 72, 64, angle=5.0), torch.ones(3), 64)
    tall = _smooth_image(96, 2)[:, :, :72]  # 96 x 72
    b = Staged(tall, affine_matrix(96, 72, 64, box=(10, 3, 60, 60)), torch.ones(3), 64)
    both = warp([a, b])
    assert torch.allclose(both[0], warp([a])[0], atol=1e-5)
    assert torch.allclose(both[1], warp([b])[0], atol=1e-5)


def test_colour_factors_scale_each_channel_and_clamp():
    image = _smooth_image()
    matrix = affine_matrix(72, 72, 72)
    out = warp([Staged(image, matrix, torch.tensor([0.5, 1.0, 100.0]), 72)])[0]
    assert torch.allclose(out[0], image[0] / 255 * 0.5, atol=1e-5)
    assert torch.allclose(out[1], image[1] / 255, atol=1e-5)
    assert out[2].max() == 1.0 and out.min() >= 0


def test_resized_crop_boxes_follow_the_course_ranges():
    random.seed(0)
    for _ in range(500):
        top, left, h, w = resized_crop_box(72, 90)
        assert 0 <= top <= 72 - h and 0 <= left <= 90 - w
        assert CROP_SCALE[0] - 0.02 <= h * w / (72 * 90) <= CROP_SCALE[1]
        assert CROP_RATIO[0] - 0.05 <= w / h <= CROP_RATIO[1] + 0.05
    top, left, h, w = resized_crop_box(20, 200)  # no box fits: the centred fallback
    assert (h, w) == (20, 24) and left == (200 - 24) // 2


@pytest.mark.parametrize("preset", ["course", "course-borders"])
def test_batched_and_per_image_presets_give_alike_images(preset):
    """The same distribution: mean brightness and spread of many augmented images agree."""
    images = [_smooth_image(72, seed) for seed in range(8)]
    stage, per_image = Stage(64, preset, 72), train_transform(64, preset)
    torch.manual_seed(0)
    random.seed(0)
    batched = warp([stage(images[i % 8]) for i in range(256)])
    reference = torch.stack([per_image(images[i % 8]) for i in range(256)])
    assert batched.shape == reference.shape == (256, 3, 64, 64)
    assert batched.mean().item() == pytest.approx(reference.mean().item(), abs=0.01)
    assert batched.std().item() == pytest.approx(reference.std().item(), abs=0.01)
    dark = (batched == 0).float().mean().item()  # rotation's zero-filled corners
    assert dark == pytest.approx((reference == 0).float().mean().item(), abs=0.01)


def test_the_loader_warps_batches_deterministically_per_epoch():
    cfg = DataConfig(synth_train=32, synth_classes=3, image_size=32, batch_size=16, workers=0)
    dataset, _ = build_dataset(cfg, "train", augment=True)
    loader = build_loader(dataset, cfg, train=True, device=torch.device("cpu"), seed=1)

    def first_batch(epoch: int) -> torch.Tensor:
        loader.sampler.set_position(epoch)
        return next(iter(loader))[0]

    a, b, c = first_batch(1), first_batch(1), first_batch(2)
    assert a.shape == (16, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= a.min() and a.max() <= 1
    assert not math.isclose(a.std().item(), 0.0)


def _inside(height, width, angle, h, w) -> bool:
    """Whether the centred h x w rectangle lies within the height x width image rotated by
    `angle` degrees: its corners, turned back by -angle, inside the image."""
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    corners = [(sx * w / 2, sy * h / 2) for sx in (-1, 1) for sy in (-1, 1)]
    return all(
        abs(cos * x + sin * y) <= width / 2 + 1e-9 and abs(-sin * x + cos * y) <= height / 2 + 1e-9
        for x, y in corners
    )


@pytest.mark.parametrize(("height", "width"), [(72, 72), (72, 96), (96, 72), (40, 200)])
@pytest.mark.parametrize("angle", [0.0, 5.0, -15.0, 30.0, 45.0])
def test_the_border_free_rectangle_is_inside_and_largest(height, width, angle):
    h, w = largest_rotated_rect(height, width, angle)
    assert _inside(height, width, angle, h, w)
    assert not _inside(height, width, angle, h * 1.01, w)  # as tall as it can be
    assert not _inside(height, width, angle, h, w * 1.01)  # and as wide
    if angle == 0:
        assert (h, w) == (height, width)
    if height == width:  # a square at angle a: side / (cos a + sin a)
        side = height / (math.cos(math.radians(abs(angle))) + math.sin(math.radians(abs(angle))))
        assert h == pytest.approx(side) and w == pytest.approx(side)


@pytest.mark.parametrize("preset", ["course", "course-borders"])
def test_only_the_border_free_course_preset_never_shows_the_rotation_fill(preset):
    """A white image: the template's preset crops the rotation's black corners away, image by
    image and batched; course-borders keeps them in some images."""
    white = torch.full((3, 72, 90), 255, dtype=torch.uint8)
    torch.manual_seed(0)
    random.seed(0)
    per_image = torch.stack([train_transform(64, preset)(white) for _ in range(100)])
    batched = warp([Stage(64, preset, 72)(white) for _ in range(100)])
    for images in (per_image, batched):
        filled = (images.amin(dim=(1, 2, 3)) < 0.8).sum().item()  # colour scaling: >= 0.85
        assert filled == 0 if preset == "course" else filled > 20
