"""The `scenelab` command line: the only module that reads argv, picks a device and prints.

Each subcommand builds configs from flags (generated from the config dataclasses), calls library
functions and writes results into a run folder, then prints where they are.
"""

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, get_type_hints

import torch
import yaml

from . import bench, runtime
from .checkpoint import CheckpointError, load_checkpoint, load_model_state
from .config import SECTIONS, ConvBenchConfig, DataConfig, RunConfig
from .data import DatasetError, build_dataset, build_datasets, build_loader
from .data.miniplaces import write_miniplaces
from .data.synthetic import CLASSES, iter_scenes
from .models import CONV_LAYERS, MODELS, build_model, count_parameters
from .report import write_evaluation
from .tracking import Console, RunDir, Tracker
from .train import FitState, TrainingError, build_optimizer, build_scheduler, evaluate, fit

# Flags that may change when resuming: they do not change what the run computes.
RESUMABLE = {"device", "workers", "log_every", "stop_after"}
CHOICES = {"model": list(MODELS), "conv": list(CONV_LAYERS)}


def add_config_flags(parser: argparse.ArgumentParser, *classes: type) -> None:
    """One flag per dataclass field; unset flags stay out of the namespace (SUPPRESS), so the
    layering defaults < --config file < command line happens in `RunConfig.override`."""
    for cls in classes:
        group = parser.add_argument_group(cls.__name__)
        hints = get_type_hints(cls)
        for f in fields(cls):
            kind = next(t for t in (bool, int, float, str) if hints[f.name] in (t, t | None))
            kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
            kwargs["help"] = f"{f.metadata['help']} (default: {f.default})"
            if kind is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["type"] = kind
                kwargs["choices"] = CHOICES.get(f.name, f.metadata.get("choices"))
            group.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def _given(args: argparse.Namespace, *classes: type) -> dict[str, Any]:
    names = {f.name for cls in classes for f in fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


def _load_yaml(path: str) -> dict[str, Any]:
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read config file {path}: {e}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of settings")
    return values


def _print_where(run: RunDir) -> None:
    print(f"\nResults: {run.root}")
    print(f"  metrics: {run.metrics_csv}   checkpoints: {run.checkpoints}")
    print(f"  TensorBoard: tensorboard --logdir {run.tb.parent.parent}")


def cmd_train(args: argparse.Namespace) -> int:
    given = _given(args, *SECTIONS.values())
    checkpoint = load_checkpoint(args.resume) if args.resume else None
    if checkpoint is not None:
        changed = sorted(set(given) - RESUMABLE)
        if changed:
            raise ValueError(
                f"--resume continues a run with its saved configuration; drop "
                f"{', '.join('--' + c.replace('_', '-') for c in changed)}"
            )
        # A resumed run goes on to its planned end unless told to stop again.
        cfg = RunConfig.from_dict(checkpoint["config"]).override({"stop_after": 0} | given)
    else:
        cfg = RunConfig().override(_load_yaml(args.config) if args.config else {}).override(given)
        cfg = cfg.resolve()
    device = runtime.pick_device(cfg.train.device)
    runtime.setup(device)
    generator = runtime.seed_everything(cfg.train.seed)
    print(f"Preparing {cfg.data.data} data ({cfg.data.resolved_image_size} px) ...", flush=True)
    train_set, val_set, classes = build_datasets(cfg.data)
    model = build_model(cfg.model, len(classes)).to(device)
    train_loader = build_loader(train_set, cfg.data, train=True, device=device, generator=generator)
    val_loader = build_loader(val_set, cfg.data, train=False, device=device)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(
        optimizer, cfg.optim, steps_per_epoch=len(train_loader), epochs=cfg.train.epochs
    )
    state = FitState()
    if checkpoint is not None:
        run = RunDir(Path(args.resume).resolve().parent.parent)
        load_model_state(model, checkpoint, cfg.model.model, args.resume)
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        state = FitState.from_checkpoint(checkpoint)
    else:
        run = RunDir.create(cfg.train.out_dir, cfg.train.name)
    run.config.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    params = count_parameters(model)
    print(
        f"Run folder {run.root}\n{cfg.model.model} ({params:,} parameters, conv {cfg.model.conv})"
        f" on {device}: {len(train_set)} train / {len(val_set)} val images, "
        f"{len(classes)} classes, epochs {state.epoch + 1}-{cfg.train.epochs}",
        flush=True,
    )
    console = Console(sys.stdout, log_every=cfg.train.log_every)
    with Tracker(run, keep_epochs=state.epoch) as tracker:
        state = fit(
            cfg,
            model,
            train_loader,
            val_loader,
            device=device,
            run=run,
            classes=classes,
            optimizer=optimizer,
            scheduler=scheduler,
            state=state,
            tracker=tracker,
            console=console,
            generator=generator,
            stop_after=cfg.train.stop_after,
        )
    summary = _summary(cfg, state, params, device)
    run.summary.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"\nbest val top-1 {summary['best_val_acc1']:.2f}%  final top-1 "
        f"{summary['final_val_acc1']:.2f}% top-5 {summary['final_val_acc5']:.2f}%  "
        f"{summary['train_seconds']:.0f}s  {summary['images_per_second']:.0f} img/s  "
        f"peak {summary['peak_memory_mb']:.0f} MB"
    )
    _print_where(run)
    return 0


def _summary(cfg: RunConfig, state: FitState, params: int, device) -> dict[str, Any]:
    t = state.totals
    return {
        "model": cfg.model.model,
        "conv": cfg.model.conv,
        "data": cfg.data.data,
        "image_size": cfg.data.resolved_image_size,
        "epochs": state.epoch,
        "epochs_planned": cfg.train.epochs,
        "params": params,
        "device": str(device),
        "best_val_acc1": state.best_acc1,
        "final_val_acc1": t["final_val_acc1"],
        "final_val_acc5": t["final_val_acc5"],
        "final_train_acc1": t["final_train_acc1"],
        "final_train_acc5": t["final_train_acc5"],
        "min_val_loss": t["min_val_loss"],
        "min_train_loss": t["min_train_loss"],
        "train_seconds": t["train_seconds"],
        "seconds_per_epoch": t["train_seconds"] / max(state.epoch, 1),
        "images_per_second": t["train_images"] / max(t["train_seconds"], 1e-9),
        "peak_memory_mb": t["peak_memory_mb"],
    }


def cmd_eval(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    cfg = RunConfig.from_dict(checkpoint["config"]).override(_given(args, DataConfig))
    device = runtime.pick_device(args.device)
    runtime.setup(device)
    classes = checkpoint["classes"]
    dataset, data_classes = build_dataset(cfg.data, args.split)
    if data_classes != classes:
        raise DatasetError(
            f"the {cfg.data.data} data has {len(data_classes)} classes that differ "
            f"from the checkpoint's {len(classes)}; evaluate on the same classes"
        )
    model = build_model(cfg.model, len(classes)).to(device)
    load_model_state(model, checkpoint, cfg.model.model, args.checkpoint)
    loader = build_loader(dataset, cfg.data, train=False, device=device)
    print(
        f"Evaluating {args.checkpoint} on {len(dataset)} {args.split} images"
        f"{' with flip TTA' if args.tta else ''} ...",
        flush=True,
    )
    metrics = evaluate(model, loader, device=device, tta=args.tta, num_classes=len(classes))
    run = RunDir(Path(args.checkpoint).resolve().parent.parent)
    name = f"{Path(args.checkpoint).stem}-{args.split}{'-tta' if args.tta else ''}"
    out = write_evaluation(
        Path(args.out) if args.out else run.eval,
        name,
        metrics,
        classes,
        {"checkpoint": str(args.checkpoint), "tta": args.tta},
    )
    print(f"top-1 {metrics['acc1']:.2f}%  top-5 {metrics['acc5']:.2f}%  loss {metrics['loss']:.4f}")
    print(f"\nResults: {out}  (metrics.json, per_class.csv, confusion.csv, confusion.png)")
    return 0


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


def cmd_bench_conv(args: argparse.Namespace) -> int:
    cfg = ConvBenchConfig(**_given(args, ConvBenchConfig))
    device = runtime.pick_device(cfg.device)
    runtime.setup(device)
    print(
        f"Benchmark: {cfg.model} training steps, batch {cfg.batch_size}, {cfg.image_size} px, "
        f"{cfg.num_classes} classes, on {device} ({torch.get_num_threads()} threads), "
        f"torch {torch.__version__}\n  time: median of {cfg.steps} steps after {cfg.warmup} "
        f"warm-up; memory: peak above the post-import level, median of {cfg.memory_repeats} "
        "fresh processes",
        flush=True,
    )
    results: dict[str, tuple[float, float]] = {}
    for variant in bench.VARIANTS:
        if not variant.onednn and device.type != "cpu":
            continue  # oneDNN is nn.Conv2d's CPU backend
        ms = bench.step_time(cfg, variant, device) * 1e3
        mb = bench.peak_memory(cfg, variant, device) if cfg.memory_repeats else float("nan")
        results[variant.label] = (ms, mb)
        print(f"  {variant.label}: {ms:.1f} ms/step, peak {mb:.0f} MiB", flush=True)
    print("\n" + bench.step_table(results, cfg.batch_size))
    if cfg.layer_repeats:
        print(f"\nPer layer (ms, median of {cfg.layer_repeats}; input batch {cfg.batch_size}):")
        print(bench.layer_table(list(bench.layer_times(cfg, device))))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scenelab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model; writes a run folder")
    p.add_argument("--config", help="YAML recipe; flags given on the command line override it")
    p.add_argument("--resume", help="continue the run of this checkpoint (its last.pt)")
    add_config_flags(p, *SECTIONS.values())
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint: top-1/5, per-class, confusion")
    p.add_argument("--checkpoint", required=True, help="a checkpoint file (best.pt or last.pt)")
    p.add_argument("--split", default="val", help="split to evaluate (default: val)")
    p.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--out", help="output folder (default: <run>/eval/)")
    add_config_flags(p, DataConfig)
    p.set_defaults(func=cmd_eval)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="action", required=True)
    p = data.add_parser("synth", help="write the synthetic scenes in the MiniPlaces layout")
    p.add_argument("--out", required=True, help="output root")
    p.add_argument("--train", type=int, default=1000, help="training images (default: 1000)")
    p.add_argument("--val", type=int, default=200, help="validation images (default: 200)")
    p.add_argument("--size", type=int, default=128, help="image size in pixels (default: 128)")
    p.add_argument("--classes", type=int, default=10, help="number of classes, at most 10")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    p.set_defaults(func=cmd_data_synth)

    benches = sub.add_parser("bench", help="benchmarks: times, memory and ratios in one run")
    benches = benches.add_subparsers(dest="bench", required=True)
    p = benches.add_parser("conv", help="nn.Conv2d vs the hand-written UnfoldConv2d")
    add_config_flags(p, ConvBenchConfig)
    p.set_defaults(func=cmd_bench_conv)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DatasetError, CheckpointError, TrainingError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
