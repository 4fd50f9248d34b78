"""`scenelab eval`: top-1/top-5, per-class accuracy and the confusion matrix of a checkpoint."""

import argparse
from pathlib import Path

from torch.utils.data import Dataset

from .. import runtime
from ..checkpoint import (
    WEIGHTS_ALONE,
    CheckpointError,
    load_checkpoint,
    trained_model,
    weights_checkpoint,
)
from ..config import DataConfig, ModelConfig, RunConfig
from ..data import build_dataset, build_loader, check_classes
from ..evaluation import evaluate
from ..report import write_evaluation
from ..tracking import RunDir
from .flags import given
from .results import refresh_report


def _weights_checkpoint(args: argparse.Namespace, weights: dict) -> tuple[dict, Dataset]:
    """A checkpoint for a bare state_dict, and the dataset to evaluate: the model from --model,
    the classes from the data flags (the dataset's class order is the model's output order)."""
    if not args.model:
        raise CheckpointError(
            f"{args.checkpoint} {WEIGHTS_ALONE}; name its model with --model (see `scenelab "
            "models`) and the data it was trained on with the data flags"
        )
    cfg = RunConfig(model=ModelConfig(model=args.model)).override(given(args, DataConfig))
    dataset, classes = build_dataset(cfg.data, args.split)
    return weights_checkpoint(weights, cfg, classes), dataset


def cmd_eval(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint, weights_alone=True)
    weights_alone, dataset = "weights" in checkpoint, None
    if weights_alone:
        checkpoint, dataset = _weights_checkpoint(args, checkpoint["weights"])
    elif args.model and args.model != checkpoint.get("model_name"):
        raise CheckpointError(
            f"{args.checkpoint} holds a {checkpoint.get('model_name')!r} model with its settings; "
            "--model is for files of weights alone: leave it out"
        )
    device = runtime.pick_device(args.device)
    runtime.setup(device)
    model, cfg = trained_model(checkpoint, args.checkpoint, given(args, DataConfig))
    model, classes = model.to(device), checkpoint["classes"]
    if dataset is None:  # a full checkpoint (weights alone built theirs above, classes and all)
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
    # a run's checkpoints/best.pt: results in the run's eval/; weights alone: beside the file
    checkpoint_dir = Path(args.checkpoint).resolve().parent
    run = RunDir(checkpoint_dir if weights_alone else checkpoint_dir.parent)
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
    if not args.out and not weights_alone:
        refresh_report(run)
    return 0
