"""Checkpoints: dicts of state dicts and primitives, written atomically, loaded weights-only.

A checkpoint holds `model`, `optimizer`, `scheduler` (state dicts), the fields of `FitState`
(where the run stands: epochs done and planned, steps, best top-1, running totals, and a step
checkpoint's position in its epoch), `config` (the run's nested config dict), `classes`
(names), `model_name` and `model_source` (where a registered model's builder lives). Nothing
is pickled beyond tensors and primitives, so `torch.load(weights_only=True)` reads it.
"""

import errno
import math
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from .budget import TimeBudget
from .config import RunConfig
from .metrics import RunningSums
from .models import build_model, ensure_registered, model_source
from .runtime import Precision, any_process, gather_objects, rank, rng_state
from .tracking import EpochLog, RunDir


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the model."""


class Interrupted(Exception):
    """Training stopped on request (SIGINT, SIGTERM) after saving a checkpoint to resume from."""


@dataclass
class FitState:
    """Where a run stands; saved in every checkpoint so `--resume` continues exactly."""

    epoch: int = 0  # completed epochs
    epochs: int = 0  # planned epochs (a time budget plans them as it goes); 0: the config's
    step: int = 0  # optimizer steps
    best_acc1: float = -1.0
    totals: dict[str, float] = field(default_factory=dict)  # seconds, images, peak memory, ...
    # Part-way through epoch `epoch + 1` (a step checkpoint): its batches done, their running
    # sums (of all processes) and each process's random state after the last of them (a list
    # by rank; one dict in checkpoints of earlier versions). Zero / None at an epoch's end.
    position: int = 0
    partial: dict[str, Any] | None = None
    rng: list[dict[str, torch.Tensor]] | dict[str, torch.Tensor] | None = None
    scaler: dict[str, Any] | None = None  # fp16's gradient scaler
    ema: dict[str, Any] | None = None  # the weight average (--ema-decay)
    budget: dict[str, Any] | None = None  # --time-budget's plan and time spent
    confusion: torch.Tensor | None = field(default=None, metadata={"saved": False})  # last val

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> "FitState":
        saved = {f.name: state[f.name] for f in fields(cls) if f.name in state}
        planned = state.get("epochs") or state["config"]["train"]["epochs"]  # earlier versions
        return cls(**saved | {"epochs": planned, "totals": dict(state["totals"])})

    def checkpoint(self) -> dict[str, Any]:
        saved = [f.name for f in fields(self) if f.metadata.get("saved", True)]
        return {name: getattr(self, name) for name in saved} | {"totals": dict(self.totals)}

    def record(self, row: dict[str, Any]) -> bool:
        """Count a finished epoch's metrics row in; True when its val top-1 is the best yet."""
        self.epoch = row["epoch"]
        t = self.totals
        t["train_seconds"] = t.get("train_seconds", 0.0) + row["epoch_seconds"]
        images = row["images_per_second"] * row["epoch_seconds"]
        t["train_images"] = t.get("train_images", 0.0) + images
        t["peak_memory_mb"] = max(t.get("peak_memory_mb", 0.0), row["peak_memory_mb"])
        t["min_val_loss"] = min(t.get("min_val_loss", math.inf), row["val_loss"])
        t["min_train_loss"] = min(t.get("min_train_loss", math.inf), row["train_loss"])
        for key in _FINAL_KEYS:
            if key in row:
                t[f"final_{key}"] = row[key]
        improved = row["val_acc1"] > self.best_acc1
        self.best_acc1 = max(self.best_acc1, row["val_acc1"])
        return improved


# Metrics whose last value the totals keep as final_<key>
_FINAL_KEYS = (
    "train_acc1",
    "train_acc5",
    "val_acc1",
    "val_acc5",
    "val_loss",
    "train_loss",
    "val_robust_acc1",
    "val_robust_drop",
    "val_images",
    "lr",
)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write to a temporary file beside `path`, flush to disk, then rename over `path`.

    A crash during the write leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch's writer reports a full disk as RuntimeError
        tmp.unlink(missing_ok=True)
        raise CheckpointError(_unwritten(path, e)) from None


def _unwritten(path: Path, error: OSError | RuntimeError) -> str:
    """Why the checkpoint `path` could not be written, the disk's free space, and what to do."""
    if isinstance(error, OSError) and error.strerror:
        reason = f"{error.strerror} ({errno.errorcode.get(error.errno or 0, 'OSError')})"
    else:
        reason = str(error).strip().splitlines()[0]
    try:
        free = f"; {shutil.disk_usage(path.parent).free / 2**20:,.0f} MB free on that disk"
    except OSError:
        free = ""
    kept = "the previous one is unchanged" if path.exists() else "no partial file was left"
    return (
        f"cannot write checkpoint {path}: {reason}{free}. Free some space (or give another "
        f"--out-dir) and resume; {kept}."
    )


# What a file of torch.save(model.state_dict()) lacks, for the messages that meet one.
WEIGHTS_ALONE = (
    "holds a model's weights alone (a state_dict, without the settings and class names that "
    "scenelab saves)"
)


def is_weights(state: Any) -> bool:
    """Whether `state` is a bare state_dict: parameter names to tensors, nothing else."""
    return (
        isinstance(state, dict)
        and bool(state)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    )


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, weights_alone: bool = False
) -> dict[str, Any]:
    """A checkpoint that scenelab wrote (model, config, classes, ...), loaded without unpickling
    anything but tensors and plain values. With `weights_alone`, a bare state_dict is returned
    as {"weights": state_dict} for the caller to name its model (`weights_checkpoint`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "allowed global" not in str(e):  # bad bytes (random, damaged), not a foreign object
            raise CheckpointError(
                f"{path} is not a readable checkpoint (damaged, or not written by torch.save); "
                "give a best.pt or last.pt that scenelab wrote"
            ) from None
        raise CheckpointError(
            f"{path} contains pickled Python objects beyond tensors and plain values; scenelab "
            "refuses to load it because unpickling can run arbitrary code. Only load "
            "checkpoints written by scenelab (or re-save the state dicts you trust)."
        ) from None
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError, ... on bad bytes
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated, or not written by torch.save): {e}"
        ) from None
    if is_weights(state):
        if weights_alone:
            return {"weights": state}
        raise CheckpointError(
            f"{path} {WEIGHTS_ALONE}; evaluate it with `scenelab eval --checkpoint {path} "
            "--model NAME` and the data flags, or give a best.pt or last.pt that scenelab wrote"
        )
    if not isinstance(state, dict) or not {"model", "config", "classes"} <= state.keys():
        raise CheckpointError(f"{path} is not a scenelab checkpoint (no model/config/classes)")
    return state


def load_model_state(
    model: nn.Module, state: dict[str, Any], model_name: str, path: str | Path = "checkpoint"
) -> None:
    """Load `state["model"]` into `model`, explaining a mismatch in terms of models and classes."""
    saved = state.get("model_name", "?")
    if saved != model_name:
        raise CheckpointError(f"{path} holds a {saved!r} model, not {model_name!r}")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise CheckpointError(
            f"{path} ({saved}, {len(state['classes'])} classes) does not fit this {model_name} "
            f"model: {first}"
        ) from None


def fresh_model(state: dict[str, Any]) -> nn.Module:
    """The checkpoint's architecture, freshly initialised (random weights), built as trained:
    a ViT's position table has the training resolution and resizes itself to other inputs."""
    cfg = RunConfig.from_dict(state["config"])
    ensure_registered(cfg.model.model, state.get("model_source"))
    return build_model(cfg.model, len(state["classes"]), cfg.data.resolved_image_size)


def weights_checkpoint(
    weights: dict[str, torch.Tensor], cfg: RunConfig, classes: list[str]
) -> dict[str, Any]:
    """A checkpoint for a bare state_dict of `cfg.model` trained on `classes` (their order is
    the output order), as `trained_model` reads it."""
    return {
        "model": weights,
        "config": cfg.to_dict(),
        "classes": list(classes),
        "model_name": cfg.model.model,
    }


def trained_model(
    state: dict[str, Any], path: str | Path, data_overrides: dict[str, Any] | None = None
) -> tuple[nn.Module, RunConfig]:
    """The checkpoint's model with its trained weights, in eval mode, and the run's config with
    `data_overrides` applied (to evaluate on other data or at another size)."""
    cfg = RunConfig.from_dict(state["config"]).override(data_overrides or {})
    model = fresh_model(state)
    load_model_state(model, state, cfg.model.model, path)
    return model.eval(), cfg


@dataclass
class Checkpointer:
    """Writes the run's checkpoints, on the main process only: `save` at an epoch's end, and
    `on_step` every `checkpoint_every` optimizer steps and when `stop()` turns true, in which
    case it raises `Interrupted` after saving. A step checkpoint holds the epoch's position,
    its running sums (of all processes) and every process's random state, from which a killed
    run resumes part-way through the epoch (the train loader needs a `ResumableSampler`)."""

    run: RunDir
    cfg: RunConfig  # its epochs: as planned at the start
    classes: list[str]
    model: nn.Module  # without DDP's wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    state: FitState
    precision: Precision
    ema: AveragedModel | None = None
    stop: Callable[[], bool] | None = None
    budget: TimeBudget | None = None
    wall: Callable[[], float] | None = None  # the run's wall time so far, saved in totals

    def save(self, improved: bool = False) -> None:
        """last.pt, and best.pt too when `improved`."""
        if rank() != 0:
            return
        state = self.state
        if self.wall is not None:
            state.totals["wall_seconds"] = self.wall()
        state.scaler = self.precision.scaler.state_dict() or None
        state.ema = self.ema.state_dict() if self.ema is not None else None
        state.budget = self.budget.state_dict() if self.budget is not None else None
        cfg = replace(self.cfg, train=replace(self.cfg.train, epochs=state.epochs))
        checkpoint = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **state.checkpoint(),
            "config": cfg.to_dict(),
            "classes": list(self.classes),
            "model_name": cfg.model.model,
            "model_source": model_source(cfg.model.model),
        }
        save_checkpoint(self.run.last, checkpoint)
        if improved:
            save_checkpoint(self.run.best, checkpoint)

    def on_step(self, log: EpochLog) -> None:
        device = self.precision.device
        # Under torchrun, an all-reduce of one number a step, so that every process stops
        # at the same step; a single process asks its own flag and does not sync.
        stopping = any_process(self.stop is not None and self.stop(), device)
        every = self.cfg.train.checkpoint_every
        if not (stopping or (every and log.step % every == 0)):
            return
        state = self.state
        state.step, state.position = log.step, log.batches
        sums = RunningSums.from_state(log.sums.state_dict(), device)  # a copy, to reduce
        state.partial = sums.all_reduce(("loss", "acc1", "acc5"), device).state_dict()
        state.rng = gather_objects(rng_state(device))
        self.save()
        if stopping:
            raise Interrupted(
                f"stopped after step {log.step} (epoch {state.epoch + 1}, batch "
                f"{state.position} of {log.total}); saved {self.run.last}"
            )
