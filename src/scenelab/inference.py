"""Use a trained run: load it in one call, then name the scenes in one's own photos.

    model, classes, transform = load_run("runs/20261201-101500-simplenet")
    image = transform(decode_rgb("beach.jpg"))  # any size: the run's eval preprocessing
    predict(model, image[None], classes, topk=3)[0]  # [Guess(name='beach', probability=0.81),..]

`predict_files` does the same for many files through a DataLoader, reporting each unreadable
file instead of stopping at the first.
"""

import glob
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from .checkpoint import CheckpointError, load_checkpoint, trained_model
from .data.decode import BadImage, decode_rgb
from .data.transforms import eval_transform
from .evaluation import tta_logits
from .modes import eval_mode
from .run_paths import locate_checkpoint
from .tracking import Console

# What torchvision.io.decode_image reads
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")


class Guess(NamedTuple):
    name: str  # class name
    probability: float  # softmax probability, 0 to 1


@dataclass(frozen=True)
class FilePrediction:
    path: str
    guesses: list[Guess]  # best first; empty when the file could not be read
    error: str = ""  # why the file could not be read


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or a run folder's best.pt (else its last.pt)."""
    found, why = locate_checkpoint(path)
    if found is None:
        raise CheckpointError(why)
    return found


def load_run(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, list[str], v2.Compose]:
    """(model in eval mode, class names, evaluation transform) of a run folder or checkpoint.

    The transform takes a uint8 (3, H, W) image of any size (`data.decode.decode_rgb`) to the
    float tensor the model saw at validation (resize, centre crop; the model normalises).
    """
    checkpoint = find_checkpoint(path)
    state = load_checkpoint(checkpoint, map_location)
    model, cfg = trained_model(state, checkpoint)
    return model, list(state["classes"]), eval_transform(cfg.data.resolved_image_size)


@torch.no_grad()
def probabilities(
    model: nn.Module, images: Tensor, *, tta: bool = False, tta_mean: str = "logits"
) -> Tensor:
    """Softmax probabilities (B, classes) of transformed images (B, 3, H, W), in eval mode."""
    with eval_mode(model):
        return tta_logits(model, images, tta, tta_mean).float().softmax(1)


def top_guesses(probs: Tensor, classes: list[str], topk: int) -> list[list[Guess]]:
    """The `topk` most probable classes of each row of `probs`, best first."""
    values, indices = probs.topk(min(topk, probs.shape[1]), dim=1)
    return [
        [Guess(classes[i], p) for i, p in zip(row_i, row_p, strict=True)]
        for row_i, row_p in zip(indices.tolist(), values.tolist(), strict=True)
    ]


def predict(
    model: nn.Module,
    images: Tensor,
    classes: list[str],
    topk: int = 5,
    *,
    tta: bool = False,
    tta_mean: str = "logits",
) -> list[list[Guess]]:
    """The top-k (class name, probability) of each transformed image (B, 3, H, W) or (3, H, W).

    Images go to the model's device; flip TTA averages logits (or `tta_mean="softmax"`).
    """
    if topk < 1:
        raise ValueError(f"topk must be at least 1, got {topk}")
    if images.dim() == 3:
        images = images[None]
    device = next(model.parameters()).device
    probs = probabilities(model, images.to(device), tta=tta, tta_mean=tta_mean)
    if probs.shape[1] != len(classes):
        raise ValueError(
            f"the model scores {probs.shape[1]} classes but {len(classes)} class names were "
            "given; pass the names it was trained with (scenelab.load_run returns them)"
        )
    return top_guesses(probs, classes, topk)


def find_images(paths: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """Image files named by `paths` (files, folders searched recursively, glob patterns), and
    the arguments that matched nothing, each with the reason."""
    found: list[Path] = []
    missing: list[str] = []
    for arg in map(str, paths):
        path = Path(arg)
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not matches:
                missing.append(f"{arg}: no {'/'.join(IMAGE_SUFFIXES)} files in this folder")
        elif path.is_file():
            matches = [path]
        else:
            matches = sorted(Path(p) for p in glob.glob(arg, recursive=True) if Path(p).is_file())
            if not matches:
                missing.append(f"{arg}: no such file or folder")
        found += matches
    return found, missing


class ImageFiles(Dataset):
    """(image, index, error) for each path: the transformed image, or None and why not."""

    def __init__(self, paths: list[Path], transform: v2.Compose) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor | None, int, str]:
        try:
            return self.transform(decode_rgb(self.paths[index])), index, ""
        except BadImage as e:
            return None, index, str(e)


def _collate(batch: list[tuple[Tensor | None, int, str]]):
    """(the readable images stacked, or None; (index, error) of every file, in order)."""
    images = [image for image, _, _ in batch if image is not None]
    return (torch.stack(images) if images else None), [(i, error) for _, i, error in batch]


def predict_files(
    model: nn.Module,
    paths: list[Path],
    classes: list[str],
    transform: v2.Compose,
    *,
    topk: int = 5,
    tta: bool = False,
    tta_mean: str = "logits",
    batch_size: int = 64,
    workers: int = 2,
    console: Console | None = None,
) -> Iterator[FilePrediction]:
    """A `FilePrediction` for each path, in order; unreadable files carry their error."""
    loader = DataLoader(
        ImageFiles(paths, transform),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
    )
    progress = (console or Console()).progress(len(loader), "predict")
    for images, batch in loader:
        guesses = iter(
            predict(model, images, classes, topk, tta=tta, tta_mean=tta_mean)
            if images is not None
            else ()
        )
        for index, error in batch:  # an unreadable file has an error and no image
            yield FilePrediction(str(paths[index]), [] if error else next(guesses), error)
        progress.step()
    progress.close()
