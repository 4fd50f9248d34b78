"""`train_one_epoch` and `fit`: the one training loop (evaluation is in evaluation.py).

Every epoch reseeds python, numpy, torch and the loader's generator from (seed, epoch), so a
resumed run sees the same data order and augmentation as an uninterrupted one.
"""

import functools
import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from .adversarial import AdversarialObjective, Objective
from .checkpoint import save_checkpoint
from .config import RunConfig
from .data.sampling import ResumableSampler
from .evaluation import PERCENT, batch_stats, evaluate, robust_accuracy
from .metrics import RunningSums
from .optim import resize_schedule
from .runtime import (
    Precision,
    Timer,
    all_reduce_,
    any_process,
    derive_seed,
    gather_objects,
    peak_memory_mb,
    rank,
    reset_peak_memory,
    rng_state,
    set_rng_state,
    unwrap,
    world_size,
)
from .tracking import Console, NullTracker, RunDir, Tracker


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss is no longer finite)."""


class NonFiniteLoss(TrainingError):
    def __init__(self, loss: float, step: int, lr: float) -> None:
        super().__init__(f"the training loss became {loss} at step {step} (lr {lr:.3g})")
        self.loss, self.step, self.lr = loss, step, lr


class Interrupted(TrainingError):
    """Training stopped on request (SIGINT, SIGTERM) after saving a checkpoint to resume from."""


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    scheduler=None,
    label_smoothing: float = 0.0,
    clip_grad: float = 0.0,
    console: Console | None = None,
    desc: str = "train",
    tracker=None,
    step: int = 0,
    objective: Objective | None = None,
    steps_per_epoch: int | None = None,
    sums: RunningSums | None = None,
    after_step: Callable[[int, int, RunningSums], None] | None = None,
    accum_steps: int = 1,
    precision: Precision | None = None,
    memory_format: torch.memory_format = torch.preserve_format,
) -> tuple[dict[str, float], int]:
    """One pass over `loader`; returns mean loss/acc1/acc5 (percent) and the new step count.

    In DDP, `model` is the DDP-wrapped model and `loader` this process's share; the metrics
    are those of all processes together, and the accumulated batches skip the gradient
    all-reduce until the step's last one (`no_sync`).

    `objective(model, x, y, epochs)` replaces the cross-entropy of the batch (adversarial
    training); `epochs` is the training done by the end of this step, in epochs (counted with
    optimizer steps per epoch). To continue an epoch part-way, pass the loader of its remaining
    batches and the `sums` of the batches done. `after_step(step, batches, sums)` runs after
    every optimizer step (step checkpoints, stop requests, weight averages); `batches` counts
    the batches of this call so far. With `accum_steps` > 1, gradients of that many batches
    are averaged into each optimizer step (the epoch's last step takes what is left).
    `precision` sets mixed precision (autocast and, for fp16, a gradient scaler);
    `memory_format` the inputs' layout (`torch.channels_last` for a model converted to it).
    Raises `NonFiniteLoss` at the first step whose loss is NaN or infinite (on any process),
    before updating.
    """
    model.train()
    tracker = tracker or NullTracker()
    sums = sums or RunningSums()
    precision = precision or Precision(device)
    batches = len(loader)
    steps_per_epoch = steps_per_epoch or math.ceil(batches / accum_steps)
    optimizer.zero_grad(set_to_none=True)
    console = console or Console()
    step_loss = torch.zeros((), device=device)  # this step's loss, over its batches
    with console.progress(batches, desc) as progress:  # closed if a step raises
        for i, (x, y) in enumerate(loader):
            x = x.to(device, non_blocking=True, memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            last = (i + 1) % accum_steps == 0 or i + 1 == batches  # of this optimizer step
            with nullcontext() if last else _no_sync(model):
                with precision.autocast():
                    if objective is None:
                        logits = model(x)
                        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
                    else:
                        loss, logits = objective(model, x, y, (step + 1) / steps_per_epoch)
                total = all_reduce_(loss.detach().float().clone())  # NaN if any process's is
                if not torch.isfinite(total):
                    lr = optimizer.param_groups[0]["lr"]
                    raise NonFiniteLoss(total.item() / world_size(), step + 1, lr)
                group = min(accum_steps, batches - i // accum_steps * accum_steps)  # this step's
                precision.scaler.scale(loss / group).backward()
                step_loss += total / world_size() / group
            sums.add(len(y), **batch_stats(logits, y, loss))
            progress.step(lambda: {"loss": sums.means()["loss"]})
            if not last:
                continue  # accumulate the next batch's gradient first
            if clip_grad > 0:
                precision.scaler.unscale_(optimizer)  # clip the true gradient, not the scaled one
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            precision.scaler.step(optimizer)
            precision.scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if scheduler is not None:
                scheduler.step()
            step += 1
            if step % console.log_every == 0:
                tracker.scalar("train/step_loss", step_loss.item(), step)
            step_loss.zero_()
            if step % 10 == 0:
                tracker.scalar("train/lr", optimizer.param_groups[0]["lr"], step)
            if after_step is not None:
                after_step(step, i + 1, sums)
    return sums.all_reduce(("loss", "acc1", "acc5"), device).means(PERCENT), step


def _no_sync(model: nn.Module):
    """DDP's `no_sync()` (no gradient all-reduce in this backward pass), else nothing."""
    ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    return model.no_sync() if ddp else nullcontext()


@dataclass
class FitState:
    """Where a run stands; saved in every checkpoint so `--resume` continues exactly."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps
    best_acc1: float = -1.0
    totals: dict[str, float] = field(default_factory=dict)  # seconds, images, peak memory, ...
    # Part-way through epoch `epoch + 1` (a step checkpoint): its batches done, their running
    # sums (of all processes) and each process's random state after the last of them (a list
    # by rank; one dict in checkpoints of earlier versions). Zero / None at an epoch's end.
    position: int = 0
    partial: dict[str, Any] | None = None
    rng: list[dict[str, Tensor]] | dict[str, Tensor] | None = None
    scaler: dict[str, Any] | None = None  # fp16's gradient scaler
    ema: dict[str, Any] | None = None  # the weight average (--ema-decay)
    confusion: torch.Tensor | None = None  # of the last validation (not checkpointed)

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> "FitState":
        return cls(state["epoch"], state["step"], state["best_acc1"], dict(state["totals"]),
                   state.get("position", 0), state.get("partial"), state.get("rng"),
                   state.get("scaler"), state.get("ema"))  # fmt: skip

    def checkpoint(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "best_acc1": self.best_acc1,
                "totals": dict(self.totals), "position": self.position, "partial": self.partial,
                "rng": self.rng, "scaler": self.scaler, "ema": self.ema}  # fmt: skip


def seed_epoch(seed: int, epoch: int, generator: torch.Generator | None, rank: int = 0) -> None:
    """Reseed every source of randomness from (seed, epoch), and the DDP rank after rank 0
    (so that processes draw different dropout masks and attack starts)."""
    s = derive_seed(seed, epoch, *([rank] if rank else []))
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
    if generator is not None:
        generator.manual_seed(s)


def fit(
    cfg: RunConfig,
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    *,
    device: torch.device,
    run: RunDir,
    classes: list[str],
    optimizer,
    scheduler,
    state: FitState | None = None,
    tracker: Tracker | NullTracker | None = None,
    console: Console | None = None,
    generator: torch.Generator | None = None,
    stop_after: int = 0,
    robust_loader: DataLoader | None = None,
    stop: Callable[[], bool] | None = None,
    resize: Callable[[float], int] | None = None,
) -> FitState:
    """Train from `state` to `cfg.train.epochs` (or `stop_after` epochs), evaluating each epoch.

    With `cfg.adv.adv_train`, the training objective is adversarial; with `robust_loader`,
    each epoch also measures robust accuracy on it (`robust_accuracy`). Writes `last.pt` every
    epoch and `best.pt` when val top-1 improves; with `cfg.train.checkpoint_every`, also
    `last.pt` every that many steps, from which a killed run resumes part-way through an epoch
    (the train loader needs a `ResumableSampler`). When `stop()` turns true, saves `last.pt`
    after the current step and raises `Interrupted`. `resize(seconds)` is called once, after
    the first epoch of a run when that epoch is still warm-up, with the epoch's wall-clock
    seconds; it returns the run's new number of epochs, and the schedule is resized to it
    (`--time-budget` corrects its estimate this way). Returns the final state.

    In DDP, `model` is the DDP-wrapped model and `train_loader` and the evaluation loaders
    this process's shares (`build_loader(rank=, world=)`); every process calls `fit`, metrics
    are those of all processes, only rank 0 writes checkpoints (give the other processes a
    `NullTracker` and a silent `Console`), and `resize` must return the same on every process.
    """
    state, tracker, console = state or FitState(), tracker or NullTracker(), console or Console()
    local, me, world = unwrap(model), rank(), world_size()  # evaluation runs on `local`
    objective = None
    if cfg.adv.adv_train != "none":
        objective = AdversarialObjective(cfg.adv, label_smoothing=cfg.optim.label_smoothing)
    epochs = cfg.train.epochs
    end = min(stop_after, epochs) if stop_after else epochs
    sampler = train_loader.sampler
    if not isinstance(sampler, ResumableSampler):
        if state.position:
            raise TrainingError("this checkpoint was saved part-way through an epoch: resuming "
                                "it needs a train loader with a ResumableSampler")  # fmt: skip
        sampler = None
    batch, accum = train_loader.batch_size, cfg.train.accum_steps
    batches = math.ceil(sampler.num_samples / batch) if sampler else len(train_loader)
    steps_per_epoch = math.ceil(batches / accum)
    ema = None
    if cfg.train.ema_decay:
        ema = AveragedModel(local, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema_decay),
                            use_buffers=True)  # fmt: skip
        if state.ema:
            ema.load_state_dict(state.ema)
    precision = Precision(device, cfg.train.amp)
    if state.scaler:
        precision.scaler.load_state_dict(state.scaler)
    memory_format = torch.channels_last if cfg.train.channels_last else torch.preserve_format
    fast = {"precision": precision, "memory_format": memory_format}

    def save(improved: bool = False) -> None:
        if me != 0:
            return
        state.scaler = precision.scaler.state_dict() or None
        state.ema = ema.state_dict() if ema is not None else None
        checkpoint = {"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), **state.checkpoint(),
                      "config": cfg.to_dict(), "classes": list(classes),
                      "model_name": cfg.model.model}  # fmt: skip
        save_checkpoint(run.last, checkpoint)
        if improved:
            save_checkpoint(run.best, checkpoint)

    def after_step(step: int, done: int, sums: RunningSums, *, first: int) -> None:
        if ema is not None:
            ema.update_parameters(local)
        stopping = any_process(stop is not None and stop(), device)  # all stop at one step
        every = cfg.train.checkpoint_every
        if not (stopping or (every and step % every == 0)):
            return
        state.step, state.position = step, first + done
        everyone = RunningSums.from_state(sums.state_dict(), device)
        state.partial = everyone.all_reduce(("loss", "acc1", "acc5"), device).state_dict()
        state.rng = gather_objects(rng_state(device))
        save()
        if stopping:
            raise Interrupted(
                f"stopped after step {step} (epoch {state.epoch + 1}, batch {state.position} of "
                f"{batches}); saved {run.last}"
            )

    while state.epoch < end:
        epoch, started = state.epoch + 1, time.perf_counter()
        seed_epoch(cfg.train.seed, epoch, generator, me)
        if sampler is not None:
            sampler.set_position(epoch, state.position * batch)
        if state.rng is not None:  # continuing part-way: the random state of that moment
            rngs = state.rng if isinstance(state.rng, list) else [state.rng]
            set_rng_state(rngs[me % len(rngs)], device)
        images = world * (len(sampler) if sampler is not None else len(train_loader.dataset))
        sums = None  # the sums of the batches done, of all processes, continue on rank 0
        if state.partial and me == 0:
            sums = RunningSums.from_state(state.partial, device)
        reset_peak_memory(device)
        try:
            with Timer(device) as timer:
                train, state.step = train_one_epoch(
                    model,
                    train_loader,
                    optimizer,
                    device=device,
                    scheduler=scheduler,
                    label_smoothing=cfg.optim.label_smoothing,
                    clip_grad=cfg.optim.clip_grad,
                    console=console,
                    desc=f"epoch {epoch}/{epochs}",
                    tracker=tracker,
                    step=state.step,
                    objective=objective,
                    steps_per_epoch=steps_per_epoch,
                    sums=sums,
                    after_step=functools.partial(after_step, first=state.position),
                    accum_steps=accum,
                    **fast,
                )
        except NonFiniteLoss as e:
            raise TrainingError(
                f"{e} in epoch {epoch}; the model was not updated with it, and the last good "
                f"checkpoint is {run.last}. Lower --lr or set --clip-grad."
            ) from None
        state.position, state.partial, state.rng = 0, None, None
        val = evaluate(local, val_loader, device=device, tta=cfg.train.tta,
                       num_classes=len(classes), **fast)  # fmt: skip
        state.confusion = val.pop("confusion")
        if ema is not None:
            averaged = evaluate(ema.module, val_loader, device=device, tta=cfg.train.tta, **fast)
            val |= {f"ema_{k}": v for k, v in averaged.items()}
        row = _epoch_row(
            epoch,
            train,
            val,
            timer.seconds,
            images,
            device,
            optimizer.param_groups[0]["lr"],
        )
        if robust_loader is not None:
            robust = robust_accuracy(local, robust_loader, cfg, device=device)
            row["val_robust_acc1"] = robust.adv_acc1
            row["val_robust_drop"] = 100 * (1 - robust.adv_acc1 / max(robust.clean_acc1, 1e-9))
        peak = torch.tensor([row["peak_memory_mb"]], device=device)
        row["peak_memory_mb"] = all_reduce_(peak, "max").item()  # of the largest process
        _accumulate(state, row)
        tracker.log_epoch(row)
        for tag, key in _TAGS.items():
            if key in row:
                tracker.scalar(tag, row[key], state.step)
        state.epoch = epoch
        improved = val["acc1"] > state.best_acc1
        state.best_acc1 = max(state.best_acc1, val["acc1"])
        save(improved)
        console.info(
            f"epoch {epoch}/{epochs}  train loss {row['train_loss']:.4f} acc1 "
            f"{row['train_acc1']:.2f}  val loss {row['val_loss']:.4f} acc1 {row['val_acc1']:.2f} "
            f"acc5 {row['val_acc5']:.2f}  {row['epoch_seconds']:.1f}s "
            f"{row['images_per_second']:.0f} img/s"
            + (f"  robust acc1 {row['val_robust_acc1']:.2f}" if robust_loader is not None else "")
        )
        if resize is not None and epoch == 1 and cfg.optim.warmup_epochs >= 1:
            epochs = resize(time.perf_counter() - started)
            end = min(stop_after, epochs) if stop_after else epochs
            cfg = replace(cfg, train=replace(cfg.train, epochs=epochs))
            resize_schedule(scheduler, cfg.optim, steps_per_epoch=steps_per_epoch, epochs=epochs)
            save()  # last.pt resumes with the new length
    return state


_TAGS = {
    "train/loss": "train_loss",
    "train/acc1": "train_acc1",
    "train/acc5": "train_acc5",
    "val/loss": "val_loss",
    "val/acc1": "val_acc1",
    "val/acc5": "val_acc5",
    "val/robust_acc1": "val_robust_acc1",
    "val/robust_drop": "val_robust_drop",
    "val_ema/loss": "val_ema_loss",
    "val_ema/acc1": "val_ema_acc1",
    "val_ema/acc5": "val_ema_acc5",
    "time/epoch_s": "epoch_seconds",
    "mem/peak_mb": "peak_memory_mb",
}


def _epoch_row(
    epoch: int, train: dict, val: dict, seconds: float, images: int, device: torch.device, lr: float
) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "train_loss": train["loss"],
        "train_acc1": train["acc1"],
        "train_acc5": train["acc5"],
        "val_loss": val["loss"],
        "val_acc1": val["acc1"],
        "val_acc5": val["acc5"],
        **{f"val_ema_{k}": val[f"ema_{k}"] for k in ("loss", "acc1", "acc5") if f"ema_{k}" in val},
        "lr": lr,
        "epoch_seconds": seconds,
        "images_per_second": images / max(seconds, 1e-9),
        "peak_memory_mb": peak_memory_mb(device),
    }


def _accumulate(state: FitState, row: dict[str, Any]) -> None:
    t = state.totals
    t["train_seconds"] = t.get("train_seconds", 0.0) + row["epoch_seconds"]
    t["train_images"] = t.get("train_images", 0.0) + row["images_per_second"] * row["epoch_seconds"]
    t["peak_memory_mb"] = max(t.get("peak_memory_mb", 0.0), row["peak_memory_mb"])
    t["min_val_loss"] = min(t.get("min_val_loss", math.inf), row["val_loss"])
    t["min_train_loss"] = min(t.get("min_train_loss", math.inf), row["train_loss"])
    for key in ("train_acc1", "train_acc5", "val_acc1", "val_acc5", "val_loss", "train_loss",
                "val_robust_acc1", "val_robust_drop"):  # fmt: skip
        if key in row:
            t[f"final_{key}"] = row[key]
