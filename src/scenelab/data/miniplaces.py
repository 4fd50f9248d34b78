"""MiniPlaces in its official list-file layout: reader with up-front validation, and writer.

    root/categories.txt   "/a/abbey 0": one category path and index per line
    root/train.txt        "train/a/abbey/00000001.jpg 0": image path under images/, label
    root/val.txt          "val/00000001.jpg 71"
    root/test.txt         "test/00000001.jpg" (optional, unlabelled)
    root/images/...       the JPEG files
    root/masks/...        optional object masks: the image path with .png (synthetic scenes)

Everything is checked when the dataset is built, before any training: malformed lines (file and
line number), labels out of range or contradicting the category folder in the path, and missing
image files. Each problem is a `DatasetError` that says what to fix.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch
from torch.utils.data import Dataset
from torchvision import io, tv_tensors

from ..config import MAX_IMAGE_PIXELS
from .decode import BadImage, DatasetError, decode_mask, decode_rgb

_SHOW = 5  # problems quoted in an error message


@dataclass(frozen=True)
class Entry:
    path: str  # relative to images/
    label: int  # -1 for the unlabelled test split
    where: str  # "file:line", for messages


def category_name(category: str) -> str:
    """'/a/abbey' -> 'abbey'; '/a/apartment_building/outdoor' -> 'apartment_building/outdoor'."""
    parts = category.strip("/").split("/")
    return "/".join(parts[1:]) if len(parts) > 1 and len(parts[0]) == 1 else "/".join(parts)


def _lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise DatasetError(f"{path} not found; check that --data-root is the MiniPlaces root")
    text = path.read_text(encoding="utf-8", errors="replace")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _fail(summary: str, problems: list[str], advice: str) -> None:
    if problems:
        shown = "\n  ".join(problems[:_SHOW])
        more = f"\n  ... and {len(problems) - _SHOW} more" if len(problems) > _SHOW else ""
        raise DatasetError(f"{summary} ({len(problems)}):\n  {shown}{more}\n{advice}")


def read_categories(path: Path) -> list[str]:
    """Category paths ordered by index; indices must be 0..K-1, each once."""
    problems, found = [], {}
    for n, line in _lines(path):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            problems.append(f"{path}:{n}: expected '<category path> <index>', got {line!r}")
        elif int(fields[1]) in found:
            problems.append(
                f"{path}:{n}: index {fields[1]} already used by {found[int(fields[1])]}"
            )
        else:
            found[int(fields[1])] = fields[0]
    _fail(f"malformed lines in {path}", problems, "Each line must read like '/a/abbey 0'.")
    if not found:
        raise DatasetError(
            f"{path} lists no categories; it needs one line per category, like '/a/abbey 0'"
        )
    if sorted(found) != list(range(len(found))):
        missing = sorted(set(range(max(found, default=-1) + 1)) - set(found))
        raise DatasetError(
            f"{path}: category indices must be 0..K-1 with none missing; missing {missing[:_SHOW]}"
        )
    return [found[i] for i in range(len(found))]


def read_list(path: Path, categories: list[str], labelled: bool = True) -> list[Entry]:
    """Entries of a split list file, checked against the categories."""
    folders = {c.strip("/"): i for i, c in enumerate(categories)}
    problems, entries = [], []
    for n, line in _lines(path):
        fields, where = line.split(), f"{path}:{n}"
        image = PurePosixPath(fields[0])
        if image.is_absolute() or ".." in image.parts:  # every image lies under images/
            problems.append(
                f"{where}: {fields[0]!r} is not a path under images/ (relative, without '..')"
            )
            continue
        if not labelled:  # the official test.txt lists paths only
            entries.append(Entry(fields[0], -1, where))
            continue
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            problems.append(f"{where}: expected '<image path> <label>', got {line!r}")
            continue
        label = int(fields[1])
        folder = folders.get(str(Path(fields[0]).parent).split("/", 1)[-1])
        if not 0 <= label < len(categories):
            problems.append(f"{where}: label {label} out of range 0..{len(categories) - 1}")
        elif folder is not None and folder != label:
            problems.append(
                f"{where}: label {label} ({categories[label]}) but the path is in "
                f"{categories[folder]} ({folder})"
            )
        entries.append(Entry(fields[0], label, where))
    _fail(
        f"bad lines in {path}",
        problems,
        f"Fix these lines; labels refer to {path.parent / 'categories.txt'}.",
    )
    if not entries:
        raise DatasetError(
            f"{path} lists no images; it needs one line per image, like "
            "'train/a/abbey/00000001.jpg 0' (a path under images/ and its label)"
        )
    return entries


class MiniPlaces(Dataset):
    """A split of a MiniPlaces-layout root; yields (image, label) or (image, label, mask)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        transform=None,
        with_masks: bool = False,
        max_pixels: int = MAX_IMAGE_PIXELS,
    ) -> None:
        self.root, self.max_pixels = Path(root), max_pixels
        if not self.root.is_dir():
            raise DatasetError(
                f"MiniPlaces root {self.root} does not exist; pass --data-root with "
                "the folder that holds categories.txt, train.txt, val.txt, images/"
            )
        self.categories = read_categories(self.root / "categories.txt")
        self.classes = [category_name(c) for c in self.categories]
        self.entries = read_list(self.root / f"{split}.txt", self.categories, split != "test")
        self._check_exist(self.image_path, "images")
        if with_masks:
            self._check_exist(self._mask_path, "masks")
        self.transform, self.with_masks = transform, with_masks
        self.cache: list[torch.Tensor | BadImage] | None = None  # decoded (cache_images)
        self.targets = [e.label for e in self.entries]

    def image_path(self, entry: Entry) -> Path:
        return self.root / "images" / entry.path

    def _mask_path(self, entry: Entry) -> Path:
        return (self.root / "masks" / entry.path).with_suffix(".png")

    def _check_exist(self, locate, what: str) -> None:
        missing = [e for e in self.entries if not locate(e).is_file()]
        _fail(
            f"{what} listed but missing under {self.root / what}",
            [f"{e.where}: {e.path}" for e in missing],
            f"Check --data-root ({self.root}) and that the {what} were fully extracted.",
        )

    def __len__(self) -> int:
        return len(self.entries)

    def _decoded(self, i: int) -> torch.Tensor:
        if self.cache is None:
            return decode_rgb(self.image_path(self.entries[i]), self.max_pixels)
        if isinstance(self.cache[i], BadImage):
            raise self.cache[i].with_traceback(None)  # a fresh traceback at each read
        return self.cache[i]

    def __getitem__(self, i: int):
        entry = self.entries[i]
        image = tv_tensors.Image(self._decoded(i))
        if not self.with_masks:
            return (self.transform(image) if self.transform else image), entry.label
        mask = tv_tensors.Mask(decode_mask(self._mask_path(entry)))
        if self.transform:
            image, mask = self.transform(image, mask)
        return image, entry.label, mask


def write_miniplaces(
    root: str | Path,
    classes: list[str],
    split: str,
    samples: Iterable[tuple[torch.Tensor, int, torch.Tensor | None]],
) -> Path:
    """Write one split in the official layout (JPEG images, PNG masks); returns the list file.

    samples: (image (3, H, W) uint8, label, mask (H, W) bool or None). Writes categories.txt too.
    """
    root = Path(root)
    categories = [f"/{name[0]}/{name}" for name in classes]
    root.mkdir(parents=True, exist_ok=True)
    (root / "categories.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(categories)))
    lines = []
    for i, (image, label, mask) in enumerate(samples):
        folder = f"train{categories[label]}" if split == "train" else split
        rel = f"{folder}/{i + 1:08d}.jpg"
        (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        io.write_jpeg(image, str(root / "images" / rel), quality=95)
        if mask is not None:
            mask_path = (root / "masks" / rel).with_suffix(".png")
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            io.write_png(mask[None].to(torch.uint8) * 255, str(mask_path))
        lines.append(f"{rel} {label}\n" if split != "test" else f"{rel}\n")
    list_file = root / f"{split}.txt"
    list_file.write_text("".join(lines))
    return list_file
