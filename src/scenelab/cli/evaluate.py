"""`scenelab eval`: top-1/top-5, per-class accuracy and the confusion matrix of a checkpoint."""

import argparse
from pathlib import Path

from .. import runtime
from ..checkpoint import load_checkpoint, trained_model
from ..config import DataConfig
from ..data import build_dataset, build_loader, check_classes
from ..evaluation import evaluate
from ..report import write_evaluation
from ..tracking import RunDir
from .flags import given
from .results import refresh_report


def cmd_eval(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    device = runtime.pick_device(args.device)
    runtime.setup(device)
    model, cfg = trained_model(checkpoint, args.checkpoint, given(args, DataConfig))
    model, classes = model.to(device), checkpoint["classes"]
    dataset, data_classes = build_dataset(cfg.data, args.split)
    check_classes(data_classes, classes, cfg.data.data)
    loader = build_loader(dataset, cfg.data, train=False, device=device)
    print(
        f"Evaluating {args.checkpoint} on {len(dataset)} {args.split} images"
        f"{' with flip TTA' if args.tta else ''} ...",
        flush=True,
    )
    metrics = evaluate(
        model,
        loader,
        device=device,
        tta=args.tta,
        tta_mean=args.tta_mean,
        num_classes=len(classes),
    )
    run = RunDir(Path(args.checkpoint).resolve().parent.parent)
    name = f"{Path(args.checkpoint).stem}-{args.split}{'-tta' if args.tta else ''}"
    out = write_evaluation(
        Path(args.out) if args.out else run.eval,
        name,
        metrics,
        classes,
        {
            "checkpoint": str(args.checkpoint),
            "model": cfg.model.model,
            "split": args.split,
            "tta": args.tta,
            "tta_mean": args.tta_mean,
        },
    )
    print(f"top-1 {metrics['acc1']:.2f}%  top-5 {metrics['acc5']:.2f}%  loss {metrics['loss']:.4f}")
    print(f"\nResults: {out}  (metrics.json, per_class.csv, confusion.csv, confusion.png)")
    if not args.out:
        refresh_report(run)
    return 0
