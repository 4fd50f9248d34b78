"""`scenelab data ...`: dataset tools."""

import argparse
import sys
from pathlib import Path

from ..data.miniplaces import write_miniplaces
from ..data.synthetic import CLASSES, iter_scenes
from ..tracking import Console


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


def add_parsers(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="action", required=True)
    p = data.add_parser("synth", help="write the synthetic scenes in the MiniPlaces layout")
    p.add_argument("--out", required=True, help="output root")
    p.add_argument("--train", type=int, default=1000, help="training images (default: 1000)")
    p.add_argument("--val", type=int, default=200, help="validation images (default: 200)")
    p.add_argument("--size", type=int, default=128, help="image size in pixels (default: 128)")
    p.add_argument("--classes", type=int, default=10, help="number of classes, at most 10")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    p.set_defaults(func=cmd_data_synth)
