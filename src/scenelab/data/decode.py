"""Reading image files into uint8 RGB tensors, with errors that name the file, and leaving
unreadable images out of their batch (`--on-bad-image skip`)."""

import re
import struct
from io import BytesIO
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, default_collate
from torchvision import io

from ..config import MAX_IMAGE_PIXELS
from .batched import Staged, warp
from .wrapped import Wrapped


class DatasetError(ValueError):
    """A dataset on disk is malformed: the message says what, where, and what to do.

    Raised in a DataLoader worker, it reaches the main process as torch re-raises a worker's
    error: the class called with one message, "Caught <class> in DataLoader worker process N",
    then the worker's traceback. The message is cut back to the original one, so that the
    user reads what is wrong rather than a traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(_original_message(message, type(self).__name__))


def _original_message(message: str, name: str) -> str:
    """A worker's re-raised message -> the original (the text after `...<name>: ` at the start
    of the traceback's last entry); any other message as it is."""
    if not message.startswith(f"Caught {name} in DataLoader worker"):
        return message
    found = re.search(rf"^[\w.]*\b{name}: (.*)\Z", message, re.MULTILINE | re.DOTALL)
    return found.group(1).strip() if found else message


_TOO_LARGE = "Shrink the image, raise --max-image-pixels, or pass --on-bad-image skip."
_CORRUPT = (
    "The file is corrupt, truncated or not an image; replace it, remove its line from the list "
    "file, or pass --on-bad-image skip."
)


class BadImage(DatasetError):
    """One image file cannot be read or decoded (`path`: the file); `advice` says what to do
    (default: for a corrupt file)."""

    def __init__(self, path: str | Path, reason: str | None = None, advice: str = _CORRUPT):
        if reason is None:  # re-raised from a DataLoader worker: `path` is the message
            super().__init__(str(path))
            found = re.match(r"cannot decode image (.*?): ", str(self))
            self.path = found.group(1) if found else ""
            return
        super().__init__(f"cannot decode image {path}: {reason}. {advice}")
        self.path = str(path)


def _first_line(error: Exception) -> str:
    """torchvision's error without the C++ source location it appends."""
    return str(error).split("\nException raised from")[0].strip().splitlines()[0]


# JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic
# coded), each followed by the frame's height and width. C4 (DHT), C8 and CC (DAC) are not.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PNG = b"\x89PNG\r\n\x1a\n"


def header_size(data) -> tuple[int, int] | None:
    """(width, height) read from a PNG's IHDR chunk or a JPEG's start-of-frame segment (the
    size libjpeg and libpng decode to), or None for another format or a header it cannot walk.

    A few microseconds an image where Pillow's header parse takes tens (3.5 vs 37 us for the
    sample's 128 px JPEGs, a third of their decoding time; 2-core AMD EPYC, 2026-12-02), so the
    pixel limit costs nothing on the formats datasets use; other formats go to Pillow.
    """
    b = memoryview(data).cast("B")
    if len(b) >= 24 and b[:8] == _PNG and b[12:16] == b"IHDR":
        return struct.unpack_from(">II", b, 16)
    if len(b) < 4 or b[0] != 0xFF or b[1] != 0xD8:  # not a JPEG (SOI)
        return None
    i = 2
    while i + 9 <= len(b):
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
        elif marker in _SOF:
            height, width = struct.unpack_from(">HH", b, i + 5)
            return width, height
        elif 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length field
            i += 2
        elif marker in (0xD9, 0xDA):  # end of image, or scan data before any frame
            return None
        else:  # APPn, DQT, DHT, COM, ...: skip the segment by its length
            i += 2 + struct.unpack_from(">H", b, i + 2)[0]
    return None


def _pixels(data: torch.Tensor) -> tuple[int, str] | None:
    """(pixels, "W x H = ") from the image file's header (no pixel data read), or None for a
    format neither `header_size` nor Pillow knows (torchvision may still decode it). Beyond
    twice its own 89.5 MP Pillow refuses to say the size; its message still gives the count."""
    size = header_size(data.numpy())
    if size is not None:
        w, h = size
        return w * h, f"{w} x {h} = "
    try:
        with Image.open(BytesIO(data.numpy().tobytes())) as header:
            w, h = header.size
            return w * h, f"{w} x {h} = "
    except Image.DecompressionBombError as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        return (int(found.group(1)), "") if found else None
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def decode_rgb(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> torch.Tensor:
    """Decode a JPEG/PNG/... file to a uint8 (3, H, W) tensor; grayscale and CMYK become RGB.
    An image of more than `max_pixels` pixels (0: no limit) is refused from its header, before
    decoding."""
    try:
        data = io.read_file(str(path))
        size = _pixels(data) if max_pixels else None
        if size is not None and size[0] > max_pixels:
            pixels, dims = size
            raise BadImage(
                path,
                f"{dims}{pixels:,} pixels, more than --max-image-pixels {max_pixels:,}",
                _TOO_LARGE,
            )
        return io.decode_image(data, mode=io.ImageReadMode.RGB)
    except (RuntimeError, OSError, ValueError) as e:
        if isinstance(e, BadImage):
            raise
        if not Path(path).is_file():  # looked at only once reading failed: off the hot path
            raise BadImage(
                path, "no such file", "Check the path, or its line in the list file."
            ) from None
        raise BadImage(path, _first_line(e)) from None


def decode_mask(path: str | Path) -> torch.Tensor:
    """Decode a mask PNG to a bool (H, W) tensor (non-zero = object)."""
    try:
        return io.decode_image(io.read_file(str(path)), mode=io.ImageReadMode.GRAY)[0] > 0
    except (RuntimeError, OSError, ValueError) as e:
        raise DatasetError(f"cannot decode mask {path}: {e}") from None


class SkipBadImages(Wrapped):
    """Yields None for a sample whose image cannot be read, after appending its path to the
    `record` file (one line per encounter, from any worker); `collate_present` then leaves it
    out of the batch."""

    def __init__(self, dataset: Dataset, record: str | Path | None = None) -> None:
        super().__init__(dataset)
        self.record = record

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except BadImage as e:
            if self.record is not None:
                with open(self.record, "a") as f:  # one short append: safe across workers
                    f.write(e.path + "\n")
            return None


def collate_present(batch: list):
    """default_collate over the samples that are not None (skipped bad images); images staged
    for batched augmentation are warped into their batch here."""
    present = [sample for sample in batch if sample is not None]
    if not present:
        raise DatasetError(
            f"none of the {len(batch)} images of a batch could be read; check the "
            "image files (the paths are listed in bad_images.txt)"
        )
    if isinstance(present[0][0], Staged):
        images, *rest = zip(*present, strict=True)
        return [warp(list(images)), *default_collate(list(zip(*rest, strict=True)))]
    return default_collate(present)


def read_bad_images(record: str | Path) -> list[str]:
    """The distinct paths in a `SkipBadImages` record, sorted ([] when there is none)."""
    path = Path(record)
    return sorted(set(path.read_text().splitlines())) if path.is_file() else []
