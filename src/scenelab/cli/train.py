"""`scenelab train`: prepare the run (data, model, loaders), `fit`, then finish it (summary,
final evaluation, report), alone or as one of torchrun's processes."""

import argparse
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, redirect_stdout
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import Subset

from .. import runtime
from ..budget import TimeBudget
from ..checkpoint import FitState, Interrupted, load_checkpoint, load_model_state
from ..config import SECTIONS, RunConfig
from ..data import Loaders, build_datasets, build_loader, fixed_subset
from ..fields import parse_duration
from ..models import (
    build_model,
    load_pretrained,
    optim_defaults,
    pretrained_state,
    resolve_model_config,
)
from ..optim import build_optimizer, build_scheduler
from ..tracking import Console, NullTracker, RunDir, Tracker
from ..train import epoch_steps, fit
from .control import StopRequest
from .flags import given, load_yaml
from .results import refresh_report
from .summary import Prepared, finish, run_line

# Flags that may change when resuming: they do not change what the run computes.
RESUMABLE = {"device", "workers", "log_every", "stop_after", "checkpoint_every"}


def new_config(args: argparse.Namespace) -> RunConfig:
    """Dataclass defaults < the model's own optimiser defaults < --config file < flags."""
    recipe = load_yaml(args.config) if args.config else {}
    flags = given(args, *SECTIONS.values())
    asked = RunConfig().override(recipe).override(flags)
    cfg = RunConfig().override(optim_defaults(asked.model)).override(recipe).override(flags)
    cfg = cfg.resolve()
    if cfg.train.time_budget and "epochs" in flags and "time_budget" not in flags:
        raise ValueError(
            f"--epochs {flags['epochs']}: {args.config} fits the run into --time-budget "
            f"{cfg.train.time_budget}, which plans the epochs; add --time-budget off to train "
            f"{flags['epochs']} epochs, or --time-budget T for another budget"
        )
    return replace(cfg, model=resolve_model_config(cfg.model))


def resumed_config(args: argparse.Namespace, checkpoint: dict[str, Any]) -> RunConfig:
    flags = given(args, *SECTIONS.values())
    changed = sorted(set(flags) - RESUMABLE)
    if changed:
        raise ValueError(
            f"--resume continues a run with its saved configuration; drop "
            f"{', '.join('--' + c.replace('_', '-') for c in changed)}"
        )
    state = FitState.from_checkpoint(checkpoint)
    if state.epoch >= state.epochs and not state.position:
        raise ValueError(
            f"{args.resume}: this run already finished its {state.epochs} epochs, so there is "
            "nothing to resume; to train longer, start a new run (scenelab train -c "
            "<run>/config.yaml --epochs N)"
        )
    # A resumed run goes on to its planned end unless told to stop again.
    return RunConfig.from_dict(checkpoint["config"]).override({"stop_after": 0} | flags)


def cmd_train(args: argparse.Namespace) -> int:
    """Alone, or as one of torchrun's processes: only rank 0 prints and writes the run folder."""
    started = args.started  # the process's start: a --time-budget counts from there
    checkpoint = load_checkpoint(args.resume) if args.resume else None
    cfg = resumed_config(args, checkpoint) if checkpoint else new_config(args)
    if args.print_config:  # nothing built, nothing written
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    with _process(cfg) as (dist, device):
        job = _prepare(cfg, args.resume, dist, device)
        cfg, run, model = job.cfg, job.run, job.model
        optimizer = build_optimizer(model, cfg.optim)
        state = (
            FitState.from_checkpoint(checkpoint)
            if checkpoint
            else FitState(epochs=cfg.train.epochs)
        )
        steps_per_epoch = epoch_steps(job.loaders.train, cfg.train.accum_steps)
        budget = _time_budget(job, state, started, steps_per_epoch, resumed=checkpoint is not None)
        scheduler = build_scheduler(
            optimizer,
            cfg.optim,
            steps_per_epoch=steps_per_epoch,
            epochs=cfg.train.epochs,
            progress=budget.progress if budget else None,
        )
        if checkpoint is not None:
            load_model_state(model, checkpoint, cfg.model.model, args.resume)
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
        if dist.main:
            run.config.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        print(run_line(job, state, dist, device), flush=True)
        if cfg.train.compile:
            model.compile()  # in place: the state dict keeps its names
        if dist.world > 1:
            ids = [device.index] if device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        stop = StopRequest(say=dist.main)
        console = Console(sys.stdout if dist.main else None, log_every=cfg.train.log_every)
        tracker = Tracker(run, keep_epochs=state.epoch, console=console) if dist.main else None
        tracker = tracker or NullTracker()  # ranks > 0 write nothing
        try:
            with tracker, stop.installed():
                state = fit(
                    cfg,
                    model,
                    job.loaders,
                    device=device,
                    run=run,
                    classes=job.classes,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    state=state,
                    tracker=tracker,
                    stop=stop,
                    budget=budget,
                    started=started,
                )
        except Interrupted as e:
            if dist.main:
                print(f"\n{e}\nResume with: {_resume_command(run, dist)}", file=sys.stderr)
                refresh_report(run)
            return 128 + (stop.signum or signal.SIGTERM)
        if dist.main:
            finish(job, state, device, dist, budget)
        return 0


def _time_budget(
    job: Prepared, state: FitState, started: float, steps_per_epoch: int, *, resumed: bool
):
    """--time-budget's planner (None without one, or for a checkpoint saved without its plan):
    new, or continuing the checkpoint's with the time it had spent."""
    cfg = job.cfg
    if not cfg.train.time_budget or (resumed and not state.budget):
        return None
    passes = (2 if cfg.train.tta else 1) * (2 if cfg.train.ema_decay else 1)
    budget = TimeBudget(
        parse_duration(cfg.train.time_budget),
        started=started,
        steps_per_epoch=steps_per_epoch,
        epoch_images=len((job.loaders.val_subset or job.loaders.val).dataset),
        final_images=len(job.val_set),
        batch_size=cfg.data.batch_size,
        val_passes=passes,
    )
    if state.budget:
        budget.load_state_dict(state.budget)
    return budget


@contextmanager
def _process(cfg: RunConfig) -> Iterator[tuple[runtime.Distributed, torch.device]]:
    """This process's place and device. Under torchrun, it is in the process group for the
    block, and only rank 0's standard output is shown."""
    dist, device = runtime.init_distributed(cfg.train.device)
    try:
        with open(os.devnull, "w") as sink, nullcontext() if dist.main else redirect_stdout(sink):
            yield dist, device
    finally:
        runtime.close_distributed()


def _prepare(
    cfg: RunConfig,
    resume: str | None,
    dist: runtime.Distributed,
    device: torch.device,
) -> Prepared:
    """The run folder (new, or that of the checkpoint to `resume`), datasets, model and
    loaders. A run folder made here is removed again if any of this fails."""
    runtime.setup(device)
    # An --amp this device cannot run fails here; the model takes the inputs' memory format.
    precision = runtime.Precision(device, cfg.train.amp, channels_last=cfg.train.channels_last)
    generator = runtime.seed_everything(cfg.train.seed)
    size = cfg.data.resolved_image_size
    weights = None
    if resume is None and (cfg.model.pretrained or cfg.model.weights):
        with runtime.main_first(dist.main):  # the other processes read rank 0's download
            weights = pretrained_state(cfg.model, progress=dist.main)  # a failure stops here
    if resume is not None:
        run = RunDir(Path(resume).resolve().parent.parent)
    else:
        made = RunDir.create(cfg.train.out_dir, cfg.train.name).root if dist.main else None
        run = RunDir(Path(runtime.broadcast_object(made)))
    with _removed_on_error(run, created=resume is None and dist.main):
        caching = ", decoding every image into memory" if cfg.data.cache_images else ""
        print(f"Preparing {cfg.data.data} data ({size} px{caching}) ...", flush=True)
        train_set, val_set, classes = build_datasets(cfg.data, bad_images=run.bad_images)
        model = build_model(cfg.model, len(classes), size)
        if weights is not None:
            print(f"Loading {load_pretrained(model, cfg.model, state=weights)}", flush=True)
        model = _sync_batchnorm(model, cfg, dist, device).to(device)
        model = model.to(memory_format=precision.memory_format)
        shard = {"rank": dist.rank, "world": dist.world}
        seeds = {"seed": cfg.train.seed, "generator": generator}
        train_loader = build_loader(
            train_set, cfg.data, train=True, device=device, **seeds, **shard
        )
        val_loader = build_loader(val_set, cfg.data, train=False, device=device, **shard)
        val_subset = None  # each epoch's but the last, with --val-subset
        if 0 < cfg.train.val_subset < len(val_set):
            subset = fixed_subset(val_set, cfg.train.val_subset)
            val_subset = build_loader(subset, cfg.data, train=False, device=device, **shard)
        robust_loader = None
        if cfg.adv.eval_limit:
            subset = Subset(val_set, range(min(cfg.adv.eval_limit, len(val_set))))
            robust_loader = build_loader(subset, cfg.data, train=False, device=device, **shard)
    loaders = Loaders(train_loader, val_loader, val_subset, robust_loader)
    return Prepared(run, cfg, train_set, val_set, classes, model, loaders)


@contextmanager
def _removed_on_error(run: RunDir, *, created: bool) -> Iterator[None]:
    """A run folder made for this command goes away again if setting up the run fails."""
    try:
        yield
    except BaseException:
        if created:
            shutil.rmtree(run.root, ignore_errors=True)
        raise


def _sync_batchnorm(
    model: nn.Module, cfg: RunConfig, dist: runtime.Distributed, device: torch.device
) -> nn.Module:
    """`--sync-bn`: SyncBatchNorm layers under torchrun (same parameters and state dict)."""
    if not cfg.train.sync_bn:
        return model
    if dist.world == 1:
        print(
            "note: --sync-bn only matters under torchrun; a single process already normalises "
            "over the whole batch",
            flush=True,
        )
        return model
    if device.type != "cuda":
        raise ValueError(
            "--sync-bn needs CUDA (torch's SyncBatchNorm does not run on the CPU); drop it to "
            "normalise over each process's share of the batch"
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _resume_command(run: RunDir, dist: runtime.Distributed) -> str:
    command = f"scenelab train --resume {run.last}"
    if dist.world == 1:
        return command
    nodes = dist.world // int(os.environ.get("LOCAL_WORLD_SIZE", dist.world))
    if nodes == 1:
        return f"torchrun --standalone --nproc-per-node {dist.world} -m {command}"
    return f"torchrun (with the same flags, on every node) -m {command}"
