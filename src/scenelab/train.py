"""`train_one_epoch` and `fit`: the one training loop (evaluation is in evaluation.py).

Every epoch reseeds python, numpy, torch and the loader's generator from (seed, epoch), so a
resumed run sees the same data order and augmentation as an uninterrupted one. `fit` is the
epoch loop of torchvision's references (train an epoch, evaluate, save on the main process);
checkpoints are written by a `Checkpointer`, which also saves every few steps and on a stop
request, and the run's progress (the planned epochs among it) lives in `FitState`.
"""

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .adversarial import Objective, build_objective
from .budget import TimeBudget
from .checkpoint import Checkpointer, FitState
from .config import RunConfig
from .data import Loaders
from .data.sampling import ResumableSampler
from .evaluation import PERCENT, batch_stats, robust_row, validate
from .metrics import RunningSums
from .optim import weight_average
from .runtime import (
    Precision,
    Timer,
    all_reduce_,
    derive_seed,
    peak_memory_mb,
    rank,
    reset_peak_memory,
    set_rng_state,
    unwrap,
    world_size,
)
from .tracking import EpochLog, NullTracker, RunDir, Tracker, epoch_row

StepHook = Callable[[EpochLog], bool | None]  # after every optimizer step; True ends the epoch


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss is no longer finite)."""


class NonFiniteLoss(TrainingError):
    def __init__(self, loss: float, step: int, lr: float) -> None:
        super().__init__(f"the training loss became {loss} at step {step} (lr {lr:.3g})")
        self.loss, self.step, self.lr = loss, step, lr


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    objective: Objective,
    *,
    device: torch.device,
    precision: Precision | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    accum_steps: int = 1,
    clip_grad: float = 0.0,
    log: EpochLog | None = None,
    on_step: Sequence[StepHook] = (),
    input_size: Callable[[int], int] | None = None,
) -> dict[str, float]:
    """One pass over `loader`; returns the mean loss, acc1 and acc5 (percent).

    `objective(model, x, y, epochs)` gives the batch's loss and logits (`CrossEntropy` for
    plain training); `epochs` is the training done by the end of this step. With `accum_steps`
    > 1, the gradients of that many batches are averaged into each optimizer step (the epoch's
    last step takes what is left). `precision` sets autocast, fp16's gradient scaler and the
    inputs' memory format. `log` counts the run's optimizer steps and the epoch's running
    metrics, shows progress, and continues an epoch resumed part-way (give it the sums of the
    batches done and the loader of the rest); `on_step` hooks run after each optimizer step,
    and the epoch ends there when one of them returns True (a spent time budget).
    `input_size(step)` (progressive resizing) is the shorter side, in pixels, that the batches of
    the step after optimizer step `step` are resized to (antialiased bilinear; None: as loaded).

    In DDP, `model` is the DDP-wrapped model and `loader` this process's share; the metrics are
    those of all processes, and accumulated batches skip the gradient all-reduce until the
    step's last one (`no_sync`). Raises `NonFiniteLoss` at the first step whose loss is NaN or
    infinite on any process, before updating.
    """
    model.train()
    precision = precision or Precision(device)
    log = log or EpochLog()
    batches = len(loader)
    steps_per_epoch = epoch_steps(loader, accum_steps)
    step_loss = torch.zeros((), device=device)  # this step's loss, over its batches
    optimizer.zero_grad(set_to_none=True)
    with log.progress(batches):
        for i, (x, y) in enumerate(loader):
            x = x.to(device, non_blocking=True, memory_format=precision.memory_format)
            if input_size is not None:
                x = resize_batch(x, input_size(log.step), precision.memory_format)
            y = y.to(device, non_blocking=True)
            last = (i + 1) % accum_steps == 0 or i + 1 == batches  # of this optimizer step
            group = min(accum_steps, batches - i // accum_steps * accum_steps)  # its batches
            with nullcontext() if last else _no_sync(model):
                with precision.autocast():
                    loss, logits = objective(model, x, y, (log.step + 1) / steps_per_epoch)
                # A host sync every batch, and it stays: a NaN must stop the run before it reaches
                # the weights (and last.pt). Under torchrun the sum makes every process stop.
                total = all_reduce_(loss.detach().float().clone())
                if not torch.isfinite(total):
                    lr = optimizer.param_groups[0]["lr"]
                    raise NonFiniteLoss(total.item() / world_size(), log.step + 1, lr)
                precision.scaler.scale(loss / group).backward()
                step_loss += total / world_size() / group
            log.update(len(y), **batch_stats(logits, y, loss))
            if not last:
                continue  # accumulate the next batch's gradient first
            if clip_grad > 0:
                precision.scaler.unscale_(optimizer)  # clip the true gradient, not the scaled one
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            precision.scaler.step(optimizer)  # fp16: syncs to read its inf check, as torch's does
            precision.scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if scheduler is not None:
                scheduler.step()
            log.optimizer_step(step_loss, optimizer.param_groups[0]["lr"])
            step_loss.zero_()
            if any([hook(log) for hook in on_step]):  # a list: every hook runs
                break
    return log.sums.all_reduce(("loss", "acc1", "acc5"), device).means(PERCENT)


def epoch_steps(loader: DataLoader, accum_steps: int = 1) -> int:
    """Optimizer steps in a whole epoch of `loader` (a DataLoader, or a list of batches), also
    when its sampler starts part-way through; the last step takes the batches left over."""
    batches = len(loader)
    if isinstance(getattr(loader, "sampler", None), ResumableSampler):
        batches = math.ceil(loader.sampler.num_samples / loader.batch_size)
    return math.ceil(batches / accum_steps)


def _no_sync(model: nn.Module):
    """DDP's `no_sync()` (no gradient all-reduce in this backward pass), else nothing."""
    ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    return model.no_sync() if ddp else nullcontext()


def fit(
    cfg: RunConfig,
    model: nn.Module,
    loaders: Loaders,
    *,
    device: torch.device,
    run: RunDir,
    classes: list[str],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    state: FitState | None = None,
    tracker: Tracker | NullTracker | None = None,
    stop: Callable[[], bool] | None = None,
    budget: TimeBudget | None = None,
    started: float | None = None,
) -> FitState:
    """Train from `state` to its planned epochs (or `cfg.train.stop_after`), evaluating each.

    Writes `last.pt` every epoch and `best.pt` when val top-1 improves (see `Checkpointer` for
    step checkpoints and `stop()`). With a `budget` (`--time-budget`; `scheduler` runs on its
    progress), the budget plans the epochs as it goes and ends the run at the step where its
    time is spent, part-way through an epoch if need be; it is saved with the checkpoints.
    `state.totals["wall_seconds"]` is the run's wall time (saved with every checkpoint; a
    resumed run adds its own) counted from `started` on `time.perf_counter`'s clock (default:
    the call; the CLI passes the process's start). With `cfg.train.progressive_resize`, the
    training batches are resized on the schedule of `progressive_size`, on the budget's
    progress or the share of the planned steps done. Returns the final state.

    In DDP, `model` is the DDP-wrapped model and the loaders this process's shares
    (`build_loader(rank=, world=)`); every process calls `fit`, metrics are those of all
    processes, and only rank 0 writes checkpoints (give the others a `NullTracker`).
    """
    state, tracker = state or FitState(), tracker or NullTracker()
    state.epochs = state.epochs or cfg.train.epochs  # 0: as the config plans
    model_without_ddp = unwrap(model)  # evaluation, weight averages and checkpoints use it
    objective = build_objective(cfg)
    precision = Precision(device, cfg.train.amp, channels_last=cfg.train.channels_last)
    if state.scaler:
        precision.scaler.load_state_dict(state.scaler)
    ema = weight_average(model_without_ddp, cfg.train.ema_decay, state.ema)
    wall = _wall_clock(state, started)
    checkpointer = Checkpointer(
        run,
        cfg,
        classes,
        model_without_ddp,
        optimizer,
        scheduler,
        state,
        precision,
        ema,
        stop,
        budget,
        wall,
    )
    on_step: list[StepHook] = [checkpointer.on_step]
    if budget is not None:
        budget.start(state.step)
        on_step.insert(0, budget.on_step)
    if ema is not None:
        on_step.insert(0, lambda _: ema.update_parameters(model_without_ddp))
    steps = epoch_steps(loaders.train, cfg.train.accum_steps)
    progress = budget.progress if budget else lambda step: step / (state.epochs * steps)
    input_size = _input_size(cfg, progress)
    while state.epoch < (min(cfg.train.stop_after, state.epochs) or state.epochs):  # 0 is off
        epoch = state.epoch + 1
        planned = budget is None or budget.plan.end is not None  # else the first plan is due
        log = _start_epoch(cfg.train.seed, state, loaders.train, tracker, device, planned)
        reset_peak_memory(device)
        with Timer(device) as timer, _non_finite_loss_stops(epoch, run):
            train = train_one_epoch(
                model,
                loaders.train,
                optimizer,
                objective,
                device=device,
                precision=precision,
                scheduler=scheduler,
                accum_steps=cfg.train.accum_steps,
                clip_grad=cfg.optim.clip_grad,
                log=log,
                on_step=on_step,
                input_size=input_size,
            )
        state.step, state.position, state.partial, state.rng = log.step, 0, None, None
        # The images of the batches trained (fewer when a spent budget ended the epoch).
        batch, done = loaders.train.batch_size, len(loaders.train.sampler)
        images = world_size() * min(done, log.batches * batch)
        if budget is not None:
            state.epochs = budget.epoch_end(epoch, state.step)
        val_loader = loaders.val_after(epoch, state.epochs)
        with Timer(device) as val_timer:
            val = validate(model_without_ddp, ema, val_loader, cfg, precision, len(classes))
        state.confusion = val.pop("confusion")
        lr = optimizer.param_groups[0]["lr"]
        row = epoch_row(epoch, train, val, timer.seconds, images, lr, _peak_memory_mb(device))
        row["val_images"] = len(val_loader.dataset)
        with Timer(device) as robust_timer:
            if loaders.robust is not None:
                row |= robust_row(model_without_ddp, loaders.robust, cfg, device)
        if budget is not None:
            budget.validated(val_timer.seconds, row["val_images"], robust_timer.seconds)
        improved = state.record(row)
        tracker.log_epoch(row, step=state.step, epochs=state.epochs)
        checkpointer.save(improved)
    state.totals["wall_seconds"] = wall()
    return state


def progressive_size(progress: float, low: int, high: int, start: float, end: float) -> int:
    """Progressive resizing's image side at `progress` (0 to 1) of training: `low` until
    `start`, growing linearly to `high` by `end`, in steps of 8 pixels (FFCV's schedule, which
    steps by 32 at ImageNet sizes)."""
    if progress >= end:
        return high
    share = max(progress - start, 0.0) / (end - start) if end > start else 0.0
    return min(high, low + round(share * (high - low) / 8) * 8)


def resize_batch(x: torch.Tensor, size: int, memory_format: torch.memory_format) -> torch.Tensor:
    """`x` (B, C, H, W) with its shorter side resized to `size` (unchanged when it is already)."""
    if min(x.shape[-2:]) == size:
        return x
    scale = size / min(x.shape[-2:])
    hw = [round(side * scale) for side in x.shape[-2:]]
    x = nn.functional.interpolate(x, hw, mode="bilinear", antialias=True, align_corners=False)
    return x.contiguous(memory_format=memory_format)


def _input_size(cfg: RunConfig, progress: Callable[[int], float]) -> Callable[[int], int] | None:
    t = cfg.train
    if not t.progressive_resize:
        return None
    high, low = cfg.data.resolved_image_size, t.progressive_resize
    start, end = t.resize_ramp_start, t.resize_ramp_end
    return lambda step: progressive_size(progress(step), low, high, start, end)


def _wall_clock(state: FitState, started: float | None) -> Callable[[], float]:
    """The run's wall time so far: what a resumed run had spent, and this process's since
    `started` (None: now)."""
    spent = state.totals.get("wall_seconds", 0.0)
    started = time.perf_counter() if started is None else started
    return lambda: spent + time.perf_counter() - started


def seed_epoch(seed: int, epoch: int, generator: torch.Generator | None, rank: int = 0) -> None:
    """Reseed every source of randomness from (seed, epoch), and the DDP rank after rank 0
    (so that processes draw different dropout masks and attack starts)."""
    s = derive_seed(seed, epoch, *([rank] if rank else []))
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
    if generator is not None:
        generator.manual_seed(s)


def _start_epoch(
    seed: int,
    state: FitState,
    loader: DataLoader,
    tracker: Tracker | NullTracker,
    device,
    planned: bool = True,
) -> EpochLog:
    """Seed epoch `state.epoch + 1` and set its sampler's position. Part-way through it (a
    step checkpoint), also the random state and running sums of that moment."""
    epoch, process = state.epoch + 1, rank()
    seed_epoch(seed, epoch, loader.generator, process)
    if isinstance(loader.sampler, ResumableSampler):
        loader.sampler.set_position(epoch, state.position * loader.batch_size)
    elif state.position:
        raise TrainingError(
            "this checkpoint was saved part-way through an epoch: resuming it needs a train "
            "loader with a ResumableSampler"
        )
    if state.rng is not None:
        rngs = state.rng if isinstance(state.rng, list) else [state.rng]
        set_rng_state(rngs[process % len(rngs)], device)
    sums = None  # the sums of the batches done, of all processes, continue on rank 0
    if state.partial and process == 0:
        sums = RunningSums.from_state(state.partial, device)
    desc = f"epoch {epoch}/{state.epochs if planned else '?'}"
    return EpochLog(tracker, desc=desc, step=state.step, batches=state.position, sums=sums)


@contextmanager
def _non_finite_loss_stops(epoch: int, run: RunDir) -> Iterator[None]:
    try:
        yield
    except NonFiniteLoss as e:
        kept = (
            f"the last good checkpoint is {run.last}"
            if run.last.is_file()
            else "no checkpoint was saved before it, so start again"
        )
        raise TrainingError(
            f"{e} in epoch {epoch}; the model was not updated with it, and {kept}. "
            "Lower --lr or set --clip-grad."
        ) from None


def _peak_memory_mb(device: torch.device) -> float:
    """This epoch's peak memory: the largest process's, in DDP."""
    peak = torch.tensor([peak_memory_mb(device)], device=device)
    return all_reduce_(peak, "max").item()
