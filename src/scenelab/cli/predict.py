"""`scenelab predict`: the top-k classes of one's own photos, on the terminal and in a file."""

import argparse
import csv
import json
import sys
from pathlib import Path

from .. import runtime
from ..document import format_table
from ..inference import FilePrediction, find_checkpoint, find_images, load_run, predict_files
from ..tracking import Console


def _table(results: list[FilePrediction], topk: int) -> str:
    rows = []
    for r in results:
        if r.error:
            rows.append([r.path, "(unreadable)", ""])
            continue
        best, *rest = r.guesses
        others = ", ".join(f"{g.name} {100 * g.probability:.1f}%" for g in rest[: topk - 1])
        rows.append([r.path, f"{best.name} {100 * best.probability:.1f}%", others])
    return format_table(["image", "top-1", f"next {topk - 1}" if topk > 1 else ""], rows)


def write_predictions(path: Path, results: list[FilePrediction]) -> None:
    """`.csv`: one row per image and rank (image, rank, class, probability; an unreadable image
    gets one row with its error); `.json`: a list of {image, predictions, error}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        rows = [
            {
                "image": r.path,
                "predictions": [{"class": g.name, "probability": g.probability} for g in r.guesses],
                "error": r.error or None,
            }
            for r in results
        ]
        path.write_text(json.dumps(rows, indent=1) + "\n")
        return
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "rank", "class", "probability", "error"])
        for r in results:
            for rank, g in enumerate(r.guesses, 1):
                writer.writerow([r.path, rank, g.name, f"{g.probability:.6f}", ""])
            if r.error:
                writer.writerow([r.path, "", "", "", r.error])


def cmd_predict(args: argparse.Namespace) -> int:
    if args.out and Path(args.out).suffix not in (".csv", ".json"):
        raise ValueError(f"--out {args.out}: give a file name ending in .csv or .json")
    paths, missing = find_images(args.images)
    for problem in missing:
        print(f"error: {problem}", file=sys.stderr)
    if not paths:
        print("error: no images to predict; give image files, folders or globs", file=sys.stderr)
        return 2
    device = runtime.pick_device(args.device)
    runtime.setup(device)
    model, classes, transform = load_run(args.checkpoint, map_location=device)
    model = model.to(device)
    console = Console(sys.stderr)
    print(f"Predicting {len(paths)} images with {find_checkpoint(args.checkpoint)} ...", flush=True)
    results = list(
        predict_files(
            model,
            paths,
            classes,
            transform,
            topk=args.topk,
            tta=args.tta,
            tta_mean=args.tta_mean,
            batch_size=args.batch_size,
            workers=args.workers,
            console=console,
        )
    )
    print(_table(results, args.topk))
    bad = [r for r in results if r.error]
    for r in bad:
        print(f"error: {r.error}", file=sys.stderr)
    if args.out:
        write_predictions(Path(args.out), results)
        print(f"\nPredictions: {args.out}")
    if bad or missing:
        print(
            f"{len(bad) + len(missing)} of the inputs could not be read (listed above); the "
            "others were predicted",
            file=sys.stderr,
        )
        return 1
    return 0
