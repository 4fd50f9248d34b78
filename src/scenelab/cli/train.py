"""`scenelab train` and `scenelab eval`."""

import argparse
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, redirect_stdout
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import Subset

from .. import runtime
from ..budget import epochs_for_budget, estimate_epoch_seconds
from ..checkpoint import load_checkpoint, load_model_state, trained_model
from ..config import SECTIONS, DataConfig, RunConfig
from ..data import build_dataset, build_datasets, build_loader, check_classes
from ..data.decode import read_bad_images
from ..evaluation import evaluate
from ..fields import parse_duration
from ..models import (
    build_model,
    count_parameters,
    load_pretrained,
    optim_defaults,
    pretrained_state,
    resolve_model_config,
)
from ..optim import build_optimizer, build_scheduler
from ..report import write_evaluation
from ..tracking import Console, NullTracker, RunDir, Tracker
from ..train import FitState, Interrupted, fit
from .flags import add_checkpoint_flags, add_config_flags, given, load_yaml
from .results import refresh_report

# Flags that may change when resuming: they do not change what the run computes.
RESUMABLE = {"device", "workers", "log_every", "stop_after", "checkpoint_every"}


class StopRequest:
    """SIGINT (Ctrl-C) or SIGTERM asks training to stop after the current step and save a
    checkpoint; a second Ctrl-C aborts at once (under torchrun, the SIGTERM that torchrun sends
    after a Ctrl-C does not). Call it to ask whether a stop was requested."""

    def __init__(self, *, say: bool = True) -> None:
        self.signum, self.say = 0, say  # say: print the notice (rank 0 only, under torchrun)

    def __call__(self) -> bool:
        return bool(self.signum)

    @contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, self._handle) for s in signals}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.signum:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # Ctrl-C twice: stop now
            return  # already stopping
        self.signum = signum
        if self.say:
            print(f"\n{signal.Signals(signum).name}: stopping after this step to save a "
                  "checkpoint (Ctrl-C again to abort at once)", file=sys.stderr,
                  flush=True)  # fmt: skip


@contextmanager
def _removed_on_error(run: RunDir, *, created: bool) -> Iterator[None]:
    """A run folder made for this command goes away again if setting up the run fails."""
    try:
        yield
    except BaseException:
        if created:
            shutil.rmtree(run.root, ignore_errors=True)
        raise


def print_where(run: RunDir) -> None:
    print(f"\nResults: {run.root}")
    print(f"  metrics: {run.metrics_csv}   checkpoints: {run.checkpoints}")
    print(f"  TensorBoard: tensorboard --logdir {run.tb.parent.parent}")


def new_config(args: argparse.Namespace) -> RunConfig:
    """Dataclass defaults < the model's own optimiser defaults < --config file < flags."""
    recipe = load_yaml(args.config) if args.config else {}
    flags = given(args, *SECTIONS.values())
    asked = RunConfig().override(recipe).override(flags)
    cfg = RunConfig().override(optim_defaults(asked.model)).override(recipe).override(flags)
    cfg = cfg.resolve()
    return replace(cfg, model=resolve_model_config(cfg.model))


def resumed_config(args: argparse.Namespace, checkpoint: dict[str, Any]) -> RunConfig:
    flags = given(args, *SECTIONS.values())
    changed = sorted(set(flags) - RESUMABLE)
    if changed:
        raise ValueError(
            f"--resume continues a run with its saved configuration; drop "
            f"{', '.join('--' + c.replace('_', '-') for c in changed)}"
        )
    # A resumed run goes on to its planned end unless told to stop again.
    return RunConfig.from_dict(checkpoint["config"]).override({"stop_after": 0} | flags)


def cmd_train(args: argparse.Namespace) -> int:
    """Alone, or as one of torchrun's processes: each joins the process group, only rank 0
    prints and writes the run folder."""
    started = time.perf_counter()  # a --time-budget counts from here
    checkpoint = load_checkpoint(args.resume) if args.resume else None
    cfg = resumed_config(args, checkpoint) if checkpoint else new_config(args)
    place, device = runtime.init_distributed(cfg.train.device)
    try:
        with open(os.devnull, "w") as sink, nullcontext() if place.main else redirect_stdout(sink):
            return _train(args, cfg, checkpoint, place, device, started)
    finally:
        runtime.close_distributed()


def _train(
    args: argparse.Namespace,
    cfg: RunConfig,
    checkpoint: dict[str, Any] | None,
    place: runtime.Distributed,
    device: torch.device,
    started: float,
) -> int:
    runtime.setup(device)
    runtime.Precision(device, cfg.train.amp)  # an --amp this device cannot run fails here
    generator = runtime.seed_everything(cfg.train.seed)
    size = cfg.data.resolved_image_size
    weights = None
    if checkpoint is None and (cfg.model.pretrained or cfg.model.weights):
        with runtime.main_first(place.main):  # the other processes read rank 0's download
            weights = pretrained_state(cfg.model, progress=place.main)  # a failure stops here
    if checkpoint is not None:
        run = RunDir(Path(args.resume).resolve().parent.parent)
    else:
        made = RunDir.create(cfg.train.out_dir, cfg.train.name).root if place.main else None
        run = RunDir(Path(runtime.broadcast_object(made)))
    with _removed_on_error(run, created=checkpoint is None and place.main):
        caching = ", decoding every image into memory" if cfg.data.cache_images else ""
        print(f"Preparing {cfg.data.data} data ({size} px{caching}) ...", flush=True)
        train_set, val_set, classes = build_datasets(cfg.data, bad_images=run.bad_images)
        model = build_model(cfg.model, len(classes), size)
        if weights is not None:
            print(f"Loading {load_pretrained(model, cfg.model, state=weights)}", flush=True)
        model = _sync_batchnorm(model, cfg, place, device).to(device)
        if cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        shard = {"rank": place.rank, "world": place.world}
        train_loader = build_loader(train_set, cfg.data, train=True, device=device,
                                    seed=cfg.train.seed, generator=generator, **shard)  # fmt: skip
        val_loader = build_loader(val_set, cfg.data, train=False, device=device, **shard)
        robust_loader = None
        if cfg.adv.eval_limit:
            subset = Subset(val_set, range(min(cfg.adv.eval_limit, len(val_set))))
            robust_loader = build_loader(subset, cfg.data, train=False, device=device, **shard)
        if checkpoint is None and cfg.train.time_budget:
            cfg = _fit_budget(cfg, model, train_set, val_set, device, robust_loader, started)
    optimizer = build_optimizer(model, cfg.optim)
    steps_per_epoch = math.ceil(len(train_loader) / cfg.train.accum_steps)
    scheduler = build_scheduler(
        optimizer, cfg.optim, steps_per_epoch=steps_per_epoch, epochs=cfg.train.epochs
    )
    state = FitState()
    if checkpoint is not None:
        load_model_state(model, checkpoint, cfg.model.model, args.resume)
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        state = FitState.from_checkpoint(checkpoint)
    if place.main:
        run.config.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    params = count_parameters(model)
    print(
        f"Run folder {run.root}\n{cfg.model.model} ({params:,} parameters, conv {cfg.model.conv})"
        f" on {device}{_processes_line(place, cfg)}: {len(train_set)} train / {len(val_set)} val "
        f"images, {len(classes)} classes, epochs {state.epoch + 1}-{cfg.train.epochs}"
        + (f" (epoch {state.epoch + 1} from batch {state.position + 1})" if state.position else "")
        + ", "
        f"{cfg.optim.optimizer} lr {cfg.optim.lr:g}"
        + _adversarial_line(cfg, len(robust_loader.dataset) if robust_loader else 0),
        flush=True,
    )
    console = Console(sys.stdout if place.main else None, log_every=cfg.train.log_every)
    if cfg.train.compile:
        model.compile()  # in place: the state dict keeps its names
    trained = model
    if place.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        trained = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    stop = StopRequest(say=place.main)
    resize = None
    if checkpoint is None and cfg.train.time_budget:
        resize = BudgetResize(cfg, run, started, main=place.main)
    tracking = Tracker(run, keep_epochs=state.epoch) if place.main else nullcontext(NullTracker())
    try:
        with tracking as tracker, stop.installed():
            state = fit(
                cfg,
                trained,
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
                robust_loader=robust_loader,
                stop=stop,
                resize=resize,
            )
    except Interrupted as e:
        if place.main:
            print(f"\n{e}\nResume with: {_resume_command(run, place)}", file=sys.stderr)
            refresh_report(run)
        return 128 + (stop.signum or signal.SIGTERM)
    if not place.main:
        return 0
    cfg = resize.cfg if resize is not None else cfg
    summary = _summary(cfg, state, params, device) | {"processes": place.world}
    bad = read_bad_images(run.bad_images)
    if cfg.data.on_bad_image == "skip":
        summary["bad_images"] = {"count": len(bad), "files": bad}
    run.summary.write_text(json.dumps(summary, indent=2) + "\n")
    if bad:
        print(f"warning: skipped {len(bad)} unreadable images (listed in {run.bad_images})",
              file=sys.stderr)  # fmt: skip
    if state.confusion is not None:  # per-class accuracy and confusions of the final model
        _write_final_evaluation(run, cfg, state, classes)
    print(
        f"\nbest val top-1 {summary['best_val_acc1']:.2f}%  final top-1 "
        f"{summary['final_val_acc1']:.2f}% top-5 {summary['final_val_acc5']:.2f}%  "
        f"{summary['train_seconds']:.0f}s  {summary['images_per_second']:.0f} img/s  "
        f"peak {summary['peak_memory_mb']:.0f} MB"
    )
    print_where(run)
    refresh_report(run)
    return 0


def _sync_batchnorm(
    model: nn.Module, cfg: RunConfig, place: runtime.Distributed, device: torch.device
) -> nn.Module:
    """`--sync-bn`: SyncBatchNorm layers under torchrun (same parameters and state dict)."""
    if not cfg.train.sync_bn:
        return model
    if place.world == 1:
        print("note: --sync-bn only matters under torchrun; a single process already "
              "normalises over the whole batch", flush=True)  # fmt: skip
        return model
    if device.type != "cuda":
        raise ValueError("--sync-bn needs CUDA (torch's SyncBatchNorm does not run on the CPU); "
                         "drop it to normalise over each process's share of the batch")  # fmt: skip
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _processes_line(place: runtime.Distributed, cfg: RunConfig) -> str:
    if place.world == 1:
        return ""
    return (f" x {place.world} processes (global batch {cfg.data.batch_size}, "
            f"{cfg.data.batch_size // place.world} per process)")  # fmt: skip


def _resume_command(run: RunDir, place: runtime.Distributed) -> str:
    command = f"scenelab train --resume {run.last}"
    if place.world == 1:
        return command
    nodes = place.world // int(os.environ.get("LOCAL_WORLD_SIZE", place.world))
    if nodes == 1:
        return f"torchrun --standalone --nproc-per-node {place.world} -m {command}"
    return f"torchrun (with the same flags, on every node) -m {command}"


def _write_final_evaluation(
    run: RunDir, cfg: RunConfig, state: FitState, classes: list[str]
) -> None:
    """eval/final-val/: the last epoch's validation, replacing an earlier run's (on resume)."""
    shutil.rmtree(run.final_eval, ignore_errors=True)
    t = state.totals
    metrics = {"acc1": t["final_val_acc1"], "acc5": t["final_val_acc5"],
               "loss": t["final_val_loss"], "confusion": state.confusion}  # fmt: skip
    meta = {"checkpoint": str(run.last), "epoch": state.epoch, "tta": cfg.train.tta}
    write_evaluation(run.eval, run.final_eval.name, metrics, classes, meta)


def _fit_budget(
    cfg: RunConfig, model, train_set, val_set, device, robust_loader, started: float
) -> RunConfig:
    """`cfg` with --epochs sized so that the run, counted from `started`, fits its budget."""
    budget = parse_duration(cfg.train.time_budget)
    print(f"Timing a few steps to fit the run into {cfg.train.time_budget} ...", flush=True)
    robust_images = len(robust_loader.dataset) if robust_loader else 0
    epoch_s = estimate_epoch_seconds(cfg, model, train_set, val_set, device=device,
                                     robust_images=robust_images,
                                     world=runtime.world_size())  # fmt: skip
    left = budget - (time.perf_counter() - started)  # data preparation and timing are spent
    epochs = runtime.broadcast_object(epochs_for_budget(left, epoch_s))  # rank 0's, everywhere
    print(
        f"about {epoch_s:.1f} s per epoch: {epochs} epochs fit in 90% of the {left:.0f} s left; "
        "the learning-rate schedule is sized to them",
        flush=True,
    )
    return replace(cfg, train=replace(cfg.train, epochs=epochs))


class BudgetResize:
    """`fit`'s `resize`: after the first epoch, the epochs that fit the budget by its measured
    time (the estimate from a few steps is rough), recorded in config.yaml. `cfg` is the run's
    configuration with the final number of epochs. Under torchrun, rank 0's answer holds."""

    def __init__(self, cfg: RunConfig, run: RunDir, started: float, *, main: bool = True) -> None:
        self.cfg, self.run, self.started, self.main = cfg, run, started, main

    def __call__(self, epoch_seconds: float) -> int:
        left = parse_duration(self.cfg.train.time_budget) - (time.perf_counter() - self.started)
        epochs = runtime.broadcast_object(1 + epochs_for_budget(left, epoch_seconds, at_least=0))
        print(
            f"epoch 1 took {epoch_seconds:.1f} s: {epochs} epochs in all fit the budget "
            f"({left:.0f} s left); the learning-rate schedule now ends there",
            flush=True,
        )
        self.cfg = replace(self.cfg, train=replace(self.cfg.train, epochs=epochs))
        if self.main:
            self.run.config.write_text(yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        return epochs


def _adversarial_line(cfg: RunConfig, robust_images: int) -> str:
    adv, line = cfg.adv, ""
    if adv.adv_train != "none":
        line += (f"\nadversarial training: {adv.adv_train}, eps {adv.adv_eps * 255:.3g}/255, "
                 f"PGD-{adv.steps} step {adv.step_size(adv.adv_eps) * 255:.3g}/255")  # fmt: skip
    if robust_images:
        line += (f"\nrobust accuracy every epoch: PGD-{adv.adv_eval_steps} at eps "
                 f"{adv.adv_eps * 255:.3g}/255, first {robust_images} val images")  # fmt: skip
    return line


def _summary(cfg: RunConfig, state: FitState, params: int, device) -> dict[str, Any]:
    t = state.totals
    robust = {}
    if "final_val_robust_acc1" in t:
        robust = {"final_robust_acc1": t["final_val_robust_acc1"],
                  "final_robust_drop": t["final_val_robust_drop"]}  # fmt: skip
    if cfg.adv.adv_train != "none" or robust:
        robust["adversarial"] = asdict(cfg.adv)
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
    } | robust


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
    if not args.out:
        refresh_report(run)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model; writes a run folder")
    p.add_argument("--config", help="YAML recipe; flags given on the command line override it")
    p.add_argument("--resume", help="continue the run of this checkpoint (its last.pt)")
    add_config_flags(p, *SECTIONS.values())
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint: top-1/5, per-class, confusion")
    add_checkpoint_flags(p, "eval")
    p.add_argument("--split", default="val", help="split to evaluate (default: val)")
    p.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    add_config_flags(p, DataConfig)
    p.set_defaults(func=cmd_eval)
