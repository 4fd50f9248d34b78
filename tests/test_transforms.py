from functools import partial

import pytest
import torch
from torchvision import tv_tensors

from scenelab.data.transforms import ChannelScale, eval_transform, resize_size, train_transform


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize(
    "make", [train_transform, partial(train_transform, preset="course-borders"), eval_transform]
)
def test_presets_give_float_images_in_unit_range_of_the_requested_size(size, make):
    image = tv_tensors.Image(torch.randint(0, 256, (3, 150, 200), dtype=torch.uint8))
    out = make(size)(image)
    assert out.shape == (3, size, size) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


def test_resize_scales_like_the_course_recipe():
    assert resize_size(128) == 144 and resize_size(64) == 72


def test_eval_preset_is_deterministic_and_centred():
    image = tv_tensors.Image(torch.randint(0, 256, (3, 144, 144), dtype=torch.uint8))
    a, b = eval_transform(128)(image), eval_transform(128)(image)
    assert torch.equal(a, b)
    assert torch.allclose(a, image[:, 8:136, 8:136].float() / 255)


def test_train_preset_is_random():
    image = tv_tensors.Image(torch.randint(0, 256, (3, 80, 80), dtype=torch.uint8))
    assert not torch.equal(train_transform(64)(image), train_transform(64)(image))


def test_light_preset_is_a_shifted_crop_of_the_resize_possibly_mirrored():
    image = tv_tensors.Image(torch.randint(0, 256, (3, 72, 72), dtype=torch.uint8))
    seen = set()
    for _ in range(40):
        out = train_transform(64, "light")(image)
        pixels, mirrored = (out * 255).round().byte(), {False: image, True: image.flip(-1)}
        crops = {
            (i, j, flip)
            for i in range(9)
            for j in range(9)
            for flip in (False, True)
            if torch.equal(pixels, mirrored[flip][:, i : i + 64, j : j + 64])
        }
        assert crops  # exactly a window of the image (no rotation, scaling or colour change)
        seen |= crops
    assert len(seen) > 10 and {flip for *_, flip in seen} == {False, True}


def test_no_augmentation_is_the_eval_preset_and_unknown_presets_are_refused():
    image = tv_tensors.Image(torch.randint(0, 256, (3, 90, 90), dtype=torch.uint8))
    assert torch.equal(train_transform(64, "none")(image), eval_transform(64)(image))
    with pytest.raises(ValueError, match="unknown augmentation preset 'strong'"):
        train_transform(64, "strong")


def test_channel_scale_stays_within_15_percent_per_channel_and_leaves_masks_alone():
    image = tv_tensors.Image(torch.full((3, 8, 8), 0.5))
    mask = tv_tensors.Mask(torch.ones(8, 8, dtype=torch.bool))
    for _ in range(50):
        out, out_mask = ChannelScale(0.15)(image, mask)
        factors = out[:, 0, 0] / 0.5
        assert ((factors >= 0.85 - 1e-6) & (factors <= 1.15 + 1e-6)).all()
        assert (out == out[:, :1, :1]).all()  # one factor per channel
        assert torch.equal(out_mask, mask)


def test_channel_scale_rejects_uint8():
    with pytest.raises(TypeError, match="after ToDtype"):
        ChannelScale()(tv_tensors.Image(torch.zeros(3, 4, 4, dtype=torch.uint8)))
