"""Stopping and sizing a training run: `StopRequest` (SIGINT and SIGTERM stop after the current
step and save), and `--time-budget` (`fit_budget` sizes the run from a few timed steps,
`BudgetResize` corrects it after the first epoch)."""

import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import yaml

from .. import runtime
from ..budget import epochs_for_budget, estimate_epoch_seconds
from ..config import RunConfig
from ..fields import parse_duration
from ..tracking import RunDir


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
            name = signal.Signals(signum).name
            print(
                f"\n{name}: stopping after this step to save a checkpoint (Ctrl-C again to "
                "abort at once)",
                file=sys.stderr,
                flush=True,
            )


def fit_budget(
    cfg: RunConfig, model, train_set, val_set, device, robust_images: int, started: float
) -> RunConfig:
    """`cfg` with --epochs sized so that the run, counted from `started`, fits its budget."""
    budget = parse_duration(cfg.train.time_budget)
    print(f"Timing a few steps to fit the run into {cfg.train.time_budget} ...", flush=True)
    world = runtime.world_size()
    epoch_s = estimate_epoch_seconds(
        cfg, model, train_set, val_set, device=device, robust_images=robust_images, world=world
    )
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
    time (the estimate from a few steps is rough), recorded in config.yaml. Under torchrun,
    rank 0's answer holds."""

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
        if self.main:
            resized = replace(self.cfg, train=replace(self.cfg.train, epochs=epochs))
            self.run.config.write_text(yaml.safe_dump(resized.to_dict(), sort_keys=False))
        return epochs
