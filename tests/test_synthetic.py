import pytest
import torch

from scenelab.data.synthetic import CLASSES, SyntheticScenes, generate
from scenelab.data.transforms import train_transform


def test_generation_is_deterministic_by_seed():
    a, la, ma = generate(20, 32, seed=3)
    b, lb, mb = generate(20, 32, seed=3)
    assert torch.equal(a, b) and torch.equal(la, lb) and torch.equal(ma, mb)
    assert not torch.equal(a, generate(20, 32, seed=4)[0])


def test_image_depends_only_on_its_index_not_the_dataset_size():
    small, _, small_masks = generate(5, 32)
    large, _, large_masks = generate(12, 32)
    assert torch.equal(small, large[:5]) and torch.equal(small_masks, large_masks[:5])


def test_splits_differ():
    assert not torch.equal(generate(10, 32, split="train")[0], generate(10, 32, split="val")[0])


def test_labels_are_balanced_and_shapes_and_dtypes_are_right():
    images, labels, masks = generate(30, 48, num_classes=10)
    assert images.shape == (30, 3, 48, 48) and images.dtype == torch.uint8
    assert masks.shape == (30, 48, 48) and masks.dtype == torch.bool
    assert torch.equal(labels, torch.arange(30) % 10)
    assert torch.bincount(labels).tolist() == [3] * 10


def test_every_image_has_an_object_mask_that_differs_from_its_surroundings():
    images, _, masks = generate(40, 64)
    for image, mask in zip(images.float(), masks, strict=True):
        assert 0 < mask.sum() < mask.numel()
        inside = image[:, mask].mean(1)
        outside = image[:, ~mask].mean(1)
        assert (inside - outside).abs().max() > 10  # grey levels


def test_class_names_and_limits():
    ds = SyntheticScenes(10, 32, num_classes=4)
    assert ds.classes == list(CLASSES[:4])
    with pytest.raises(ValueError, match="1 to 10 classes"):
        generate(4, 32, num_classes=11)
    with pytest.raises(ValueError, match="at least 16 pixels"):
        generate(4, 8)


def test_masks_stay_aligned_with_images_under_training_augmentation():
    # An image that *is* its mask: after the same random geometry, thresholding the image
    # must give back the transformed mask (up to interpolation at thin boundaries).
    _, _, masks = generate(10, 64)
    ds = SyntheticScenes(10, 64, transform=train_transform(64), with_masks=True)
    ds.images = masks[:, None].expand(-1, 3, -1, -1).to(torch.uint8) * 255
    torch.manual_seed(0)  # the augmentation's draws
    for i in range(10):
        image, label, mask = ds[i]
        assert label == i % 10 and image.shape == (3, 64, 64) and mask.shape == (64, 64)
        if mask.sum() < 20 or ds.classes[label] == "night_sky":
            # a sliver of a small object, or the 1-2 pixel stars of a night sky, which the
            # image's bilinear resampling thins out below the threshold (the mask's does not)
            continue
        from_image = image.mean(0) > 0.5
        iou = (from_image & mask).sum() / (from_image | mask).sum()
        assert iou > 0.6, f"image {i}: IoU {iou:.2f}"  # misaligned pairs score ~0.2
