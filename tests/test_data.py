import shutil
from io import BytesIO

import pytest
import torch
from PIL import Image
from torchvision import io

from scenelab.config import DataConfig
from scenelab.data import DatasetError, build_dataset, build_datasets
from scenelab.data.batched import Staged, warp
from scenelab.data.miniplaces import MiniPlaces, category_name
from scenelab.data.sampling import SeededDataset
from scenelab.data.synthetic import generate

from conftest import write_tiny


def _edit(path, lineno, text):
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")


def test_reads_the_official_layout(tiny_miniplaces):
    ds = MiniPlaces(tiny_miniplaces, "train")
    assert len(ds) == 12 and ds.classes == ["coast", "forest", "desert"]
    image, label = ds[4]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and label == 4 % 3
    assert (tiny_miniplaces / "categories.txt").read_text().splitlines()[0] == "/c/coast 0"
    assert (tiny_miniplaces / "train.txt").read_text().splitlines()[0] == (
        "train/c/coast/00000001.jpg 0"
    )


def test_written_images_and_masks_read_back_as_generated(tiny_miniplaces):
    images, labels, masks = generate(6, 32, num_classes=3, split="val")
    ds = MiniPlaces(tiny_miniplaces, "val", with_masks=True)
    for i in range(6):
        image, label, mask = ds[i]
        assert label == labels[i]
        assert torch.equal(mask, masks[i])  # PNG: lossless
        error = (image.float() - images[i].float()).abs().mean()  # JPEG q95
        assert error < 15 and error < (image.float() - images[i - 1].float()).abs().mean() / 3


def test_category_names_drop_the_letter_folder():
    assert category_name("/a/abbey") == "abbey"
    assert category_name("/a/apartment_building/outdoor") == "apartment_building/outdoor"


def test_unlabelled_test_split(tiny_miniplaces):
    (tiny_miniplaces / "test.txt").write_text("val/00000001.jpg\nval/00000002.jpg\n")
    ds = MiniPlaces(tiny_miniplaces, "test")
    assert len(ds) == 2 and ds[1][1] == -1


def test_missing_root_says_what_to_pass(tmp_path):
    with pytest.raises(DatasetError, match="does not exist; pass --data-root"):
        MiniPlaces(tmp_path / "nowhere")


@pytest.mark.faults
def test_missing_list_file_is_named(tiny_miniplaces):
    (tiny_miniplaces / "val.txt").unlink()
    with pytest.raises(DatasetError, match=r"val\.txt not found"):
        MiniPlaces(tiny_miniplaces, "val")


@pytest.mark.faults
def test_malformed_category_line_names_file_and_line(tiny_miniplaces):
    _edit(tiny_miniplaces / "categories.txt", 2, "/f/forest one")
    with pytest.raises(DatasetError, match=r"categories\.txt:2: expected .*'/f/forest one'"):
        MiniPlaces(tiny_miniplaces)


def test_duplicate_or_missing_category_indices(tiny_miniplaces):
    _edit(tiny_miniplaces / "categories.txt", 3, "/d/desert 1")
    with pytest.raises(DatasetError, match=r"categories\.txt:3: index 1 already used"):
        MiniPlaces(tiny_miniplaces)
    _edit(tiny_miniplaces / "categories.txt", 3, "/d/desert 5")
    with pytest.raises(DatasetError, match=r"missing \[2, 3, 4\]"):
        MiniPlaces(tiny_miniplaces)


@pytest.mark.faults
def test_malformed_list_line_names_file_line_and_text(tiny_miniplaces):
    _edit(tiny_miniplaces / "train.txt", 3, "train/d/desert/00000003.jpg two")
    with pytest.raises(DatasetError, match=r"train\.txt:3: expected .*'train/d/desert/00000003"):
        MiniPlaces(tiny_miniplaces)


@pytest.mark.faults
def test_label_out_of_range(tiny_miniplaces):
    _edit(tiny_miniplaces / "val.txt", 2, "val/00000002.jpg 7")
    with pytest.raises(DatasetError, match=r"val\.txt:2: label 7 out of range 0\.\.2"):
        MiniPlaces(tiny_miniplaces, "val")


@pytest.mark.faults
def test_label_contradicting_the_category_folder(tiny_miniplaces):
    _edit(tiny_miniplaces / "train.txt", 1, "train/c/coast/00000001.jpg 2")
    with pytest.raises(
        DatasetError,
        match=r"train\.txt:1: label 2 \(/d/desert\) but the path is "
        r"in /c/coast \(0\)",
    ):
        MiniPlaces(tiny_miniplaces)


def test_every_problem_is_counted_and_the_first_few_quoted(tiny_miniplaces):
    path = tiny_miniplaces / "train.txt"
    path.write_text("".join(f"bad line {i}\n" for i in range(8)))
    with pytest.raises(DatasetError, match=r"\(8\):(.|\n)*train\.txt:5:(.|\n)*and 3 more") as e:
        MiniPlaces(tiny_miniplaces)
    assert "train.txt:6" not in str(e.value)


@pytest.mark.faults
def test_missing_images_are_counted_with_the_first_paths(tiny_miniplaces):
    shutil.rmtree(tiny_miniplaces / "images" / "train" / "f")
    with pytest.raises(
        DatasetError,
        match=r"images listed but missing .*\(4\):\n.*train\.txt:2: "
        r"train/f/forest/00000002\.jpg",
    ):
        MiniPlaces(tiny_miniplaces)


@pytest.mark.faults
def test_corrupt_image_names_the_file(tiny_miniplaces):
    bad = tiny_miniplaces / "images" / "val" / "00000003.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    ds = MiniPlaces(tiny_miniplaces, "val")
    with pytest.raises(DatasetError, match=r"cannot decode image .*00000003\.jpg.*corrupt"):
        ds[2]


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grayscale_and_cmyk_jpegs_become_rgb(tiny_miniplaces, mode):
    path = tiny_miniplaces / "images" / "val" / "00000001.jpg"
    Image.new("RGB", (32, 32), (200, 40, 40)).convert(mode).save(path)
    image, _ = MiniPlaces(tiny_miniplaces, "val")[0]
    assert image.shape == (3, 32, 32)
    if mode == "CMYK":
        assert image[0].float().mean() > image[1].float().mean() + 80  # still red


def test_masks_requested_but_absent(tiny_miniplaces):
    shutil.rmtree(tiny_miniplaces / "masks")
    with pytest.raises(DatasetError, match="masks listed but missing"):
        MiniPlaces(tiny_miniplaces, "val", with_masks=True)


def test_build_datasets_applies_the_presets(tiny_miniplaces):
    cfg = DataConfig(data="miniplaces", data_root=str(tiny_miniplaces), image_size=24)
    train, val, classes = build_datasets(cfg)
    staged, _ = train[0]  # batched augmentation: the image and its parameters, warped per batch
    assert isinstance(staged, Staged) and staged.image.dtype == torch.uint8
    for image in (warp([staged])[0], val[0][0]):
        assert image.shape == (3, 24, 24) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1
    assert classes == ["coast", "forest", "desert"]


def test_synthetic_is_the_default_source_and_limit_applies():
    cfg = DataConfig(synth_train=10, synth_val=20, synth_classes=5, limit=7)
    train, val, classes = build_datasets(cfg)
    assert len(train) == 10 and len(val) == 7 and len(classes) == 5
    assert val[0][0].shape == (3, 64, 64)


def test_sources_that_need_a_root_say_so():
    with pytest.raises(DatasetError, match="--data miniplaces needs --data-root"):
        build_datasets(DataConfig(data="miniplaces"))


def _image_folder(root, split, classes):
    for name in classes:
        (root / split / name).mkdir(parents=True)
        for i in range(2):
            image = torch.randint(0, 256, (3, 20, 20), dtype=torch.uint8)
            io.write_jpeg(image, str(root / split / name / f"{i}.jpg"))


def test_image_folder_trees(tmp_path):
    _image_folder(tmp_path, "train", ["beach", "city"])
    _image_folder(tmp_path, "val", ["beach", "city"])
    train, val, classes = build_datasets(DataConfig(data="folder", data_root=str(tmp_path)))
    assert classes == ["beach", "city"] and len(train) == 4 and len(val) == 4
    assert val[3][0].shape == (3, 128, 128) and val[3][1] == 1


def test_image_folder_errors(tmp_path):
    _image_folder(tmp_path, "train", ["beach", "city"])
    with pytest.raises(DatasetError, match=r"val not found: a folder dataset needs"):
        build_datasets(DataConfig(data="folder", data_root=str(tmp_path)))
    _image_folder(tmp_path, "val", ["beach", "forest"])
    with pytest.raises(DatasetError, match="train and val have different classes"):
        build_datasets(DataConfig(data="folder", data_root=str(tmp_path)))


def test_folder_without_masks(tmp_path):
    with pytest.raises(DatasetError, match="no object masks"):
        build_dataset(DataConfig(data="folder", data_root=str(tmp_path)), "val", with_masks=True)


def test_tiny_helper_writes_requested_sizes(tmp_path):
    root = write_tiny(tmp_path / "t", num_classes=2, train=4, val=2, size=16)
    assert len(MiniPlaces(root, "train")) == 4 and len(MiniPlaces(root, "val")) == 2


@pytest.mark.parametrize("source", ["miniplaces", "folder"])
def test_cached_images_give_exactly_the_uncached_tensors(tiny_miniplaces, tmp_path, source):
    root = tiny_miniplaces
    if source == "folder":
        root = tmp_path / "tree"
        for split in ("train", "val"):
            _image_folder(root, split, ["beach", "city"])
    plain = DataConfig(data=source, data_root=str(root), image_size=24, workers=0)
    cached = DataConfig(
        data=source, data_root=str(root), image_size=24, workers=2, cache_images=True
    )
    for augment in (False, True):
        a, _ = build_dataset(plain, "train", augment=augment)
        b, _ = build_dataset(cached, "train", augment=augment)
        for i in range(len(a)):
            x, y = SeededDataset(a)[i, i][0], SeededDataset(b)[i, i][0]
            if augment:  # staged for batched augmentation: compare the warped images
                x, y = warp([x]), warp([y])
            assert torch.equal(x, y), (augment, i)


def test_an_image_that_cannot_be_cached_fails_when_read_or_is_skipped(tiny_miniplaces):
    bad = tiny_miniplaces / "images" / "val" / "00000003.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    root = str(tiny_miniplaces)
    cfg = DataConfig(data="miniplaces", data_root=root, image_size=24, workers=0, cache_images=True)
    val, _ = build_dataset(cfg, "val")
    with pytest.raises(DatasetError, match=r"cannot decode image .*00000003\.jpg: .*corrupt"):
        val[2]
    skip, _ = build_dataset(DataConfig(**{**cfg.__dict__, "on_bad_image": "skip"}), "val")
    assert skip[2] is None and skip[1] is not None


def test_a_fixed_subset_is_the_same_every_time_in_order_and_mixes_the_classes():
    from scenelab.data import fixed_subset

    labels = [i % 4 for i in range(40)]  # cycling through the classes
    a, b = fixed_subset(labels, 10), fixed_subset(labels, 10)
    assert a.indices == b.indices == sorted(a.indices) and len(set(a.indices)) == 10
    assert len({labels[i] for i in a.indices}) > 1
    by_class = sorted(labels)  # stored class by class
    assert len({by_class[i] for i in fixed_subset(by_class, 10).indices}) > 1
    assert fixed_subset(labels, 0) is labels and fixed_subset(labels, 40) is labels


@pytest.mark.parametrize("augmented", [False, True], ids=["eval", "augmented"])
def test_data_show_draws_a_grid_of_images_named_by_class(
    tiny_miniplaces, tmp_path, capsys, augmented
):
    from scenelab.cli import main

    out = tmp_path / "pictures" / "grid.png"
    flags = ["--data", "miniplaces", "--data-root", str(tiny_miniplaces), "--image-size", "32"]
    flags += ["--num", "6", "--out", str(out)] + (["--augmented"] if augmented else [])
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert main(["data", "show", *flags]) == 0
    after = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert set(after) - set(before) == {out} and out.stat().st_size > 2000  # nothing else
    with Image.open(out) as image:
        assert image.width > image.height  # one row of 6
    assert "6 random train images of 12" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fmt, options",
    [
        ("JPEG", {}),
        ("JPEG", {"progressive": True}),
        ("JPEG", {"exif": b"Exif\x00\x00" + bytes(3000), "quality": 50}),
        ("JPEG", {"subsampling": 0, "icc_profile": bytes(5000)}),
        ("PNG", {}),
        ("GIF", {}),
        ("BMP", {}),
    ],
)
def test_the_header_size_is_pillow_s(fmt, options):
    from scenelab.data.decode import _pixels, header_size

    buffer = BytesIO()
    Image.new("RGB", (37, 23), (200, 10, 10)).save(buffer, fmt, **options)
    data = buffer.getvalue()
    with Image.open(BytesIO(data)) as image:
        expected = image.size
    # JPEG and PNG read here; other formats: None here, Pillow's size in _pixels
    assert header_size(data) == (expected if fmt in ("JPEG", "PNG") else None)
    assert _pixels(torch.frombuffer(bytearray(data), dtype=torch.uint8)) == (37 * 23, "37 x 23 = ")
    assert header_size(data[:40]) is None or fmt == "PNG"  # a cut header: not guessed


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(tiny_miniplaces):
    from scenelab.data.decode import BadImage, decode_rgb

    path = tiny_miniplaces / "images" / "val" / "00000001.jpg"
    with pytest.raises(
        BadImage, match=r"32 x 32 = 1,024 pixels, more than --max-image-pixels 1,000"
    ):
        decode_rgb(path, max_pixels=1000)
    assert decode_rgb(path, max_pixels=1024).shape == (3, 32, 32)
    assert decode_rgb(path, max_pixels=0).shape == (3, 32, 32)  # 0: no limit
    with pytest.raises(BadImage, match="no such file. Check the path"):
        decode_rgb(path.with_name("missing.jpg"))
