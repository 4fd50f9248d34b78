"""`scenelab data ...`: dataset tools."""

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

from ..config import DataConfig
from ..data import build_dataset
from ..data.download import MINIPLACES, ProgressFn, Source, download_miniplaces
from ..data.miniplaces import MiniPlaces, write_miniplaces
from ..data.synthetic import CLASSES, iter_scenes
from ..plots import plot_samples
from ..tracking import Console
from .flags import given


def cmd_data_synth(args: argparse.Namespace) -> int:
    classes = list(CLASSES[: args.classes])
    console = Console(sys.stdout, log_every=max(1, (args.train + args.val) // 10))
    for split, count in (("train", args.train), ("val", args.val)):
        progress = console.progress(count, f"writing {split}")

        def samples(split=split, count=count, progress=progress):
            for sample in iter_scenes(count, args.size, args.classes, args.seed, split):
                progress.step()
                yield sample

        write_miniplaces(args.out, classes, split, samples())
        progress.close()
    print(
        f"\nSynthetic scenes ({args.train} train, {args.val} val, {args.size} px, "
        f"{args.classes} classes) written to {args.out} in the MiniPlaces layout, masks in "
        f"{Path(args.out) / 'masks'}.\nTrain on them with: scenelab train --data miniplaces "
        f"--data-root {args.out} --image-size {args.size}"
    )
    return 0


def _byte_progress(name: str) -> ProgressFn:
    """A tqdm bar in bytes on a terminal; a line every 10% (or 10 MB) otherwise."""
    if sys.stdout.isatty():
        from tqdm import tqdm

        bar: list[tqdm] = []

        def update(done: int, total: int | None) -> None:
            if not bar:
                bar.append(tqdm(total=total, unit="B", unit_scale=True, desc=name, leave=False))
            bar[0].update(done - bar[0].n)

        return update
    last = [-1]

    def log(done: int, total: int | None) -> None:
        mark = done * 10 // total if total else done // 10_000_000
        if mark != last[0]:
            last[0] = mark
            of = f" of {total / 1e6:.1f} MB" if total else " MB"
            print(f"{name}: {done / 1e6:.1f}{of}", flush=True)

    return log


def _sources(args: argparse.Namespace) -> dict[str, Source]:
    """The official sources, or the same file names under --mirror, with --sha256 pins."""
    pins = {}
    for item in args.sha256 or []:
        name, _, digest = item.partition("=")
        if name not in MINIPLACES or len(digest) != 64:
            raise ValueError(
                f"--sha256 expects NAME=HEX with NAME one of {', '.join(MINIPLACES)} "
                f"and a 64-digit SHA-256, got {item!r}"
            )
        pins[name] = digest
    return {
        name: Source(
            args.mirror.rstrip("/") + "/" + name if args.mirror else s.url,
            pins.get(name, s.sha256),
            s.optional,
        )
        for name, s in MINIPLACES.items()
    }


def cmd_data_show(args: argparse.Namespace) -> int:
    """A grid of sample images with their class names (the reports' first figure)."""
    cfg = replace(DataConfig(**given(args, DataConfig)), batch_augment=False)
    dataset, classes = build_dataset(cfg, args.split, augment=args.augmented)
    generator = torch.Generator().manual_seed(args.seed)
    picks = torch.randperm(len(dataset), generator=generator)[: args.num].tolist()
    torch.manual_seed(args.seed)  # the augmentation's draws
    samples = [dataset[i] for i in picks]
    images = torch.stack([image for image, _ in samples])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_samples(images, [classes[int(label)] for _, label in samples], out)
    how = "as training augments them" if args.augmented else "as evaluated"
    print(f"{len(samples)} random {args.split} images of {len(dataset)} ({how}): {out}")
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    root = Path(args.root)
    print(f"Downloading MiniPlaces into {root} (an interrupted download resumes) ...", flush=True)
    digests = download_miniplaces(root, sources=_sources(args), progress=_byte_progress)
    for split in ("train", "val"):
        MiniPlaces(root, split)  # the installed lists and images check out
    print("\nSHA-256 of the downloaded files (pin them with --sha256 NAME=HEX):")
    for name, digest in digests.items():
        print(f"  {name}  {digest}")
    print(
        f"\nMiniPlaces is ready in {root}. Train with: scenelab train --data miniplaces "
        f"--data-root {root}"
    )
    return 0
