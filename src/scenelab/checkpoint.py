"""Checkpoints: dicts of state dicts and primitives, written atomically, loaded weights-only.

A checkpoint holds `model`, `optimizer`, `scheduler` (state dicts), `epoch` (completed epochs),
`step`, `best_acc1`, `totals` (running figures for the summary), `config` (the run's nested
config dict), `classes` (names) and `model_name`. Nothing is pickled beyond tensors and
primitives, so `torch.load(weights_only=True)` reads it.
"""

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import RunConfig
from .models import build_model


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the model."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write to a temporary file beside `path`, flush to disk, then rename over `path`.

    A crash during the write leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} contains pickled Python objects beyond tensors and plain values; scenelab "
            "refuses to load it because unpickling can run arbitrary code. Only load "
            "checkpoints written by scenelab (or re-save the state dicts you trust)."
        ) from None
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError, ... on bad bytes
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated, or not written by torch.save): {e}"
        ) from None
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
    trained = RunConfig.from_dict(state["config"])
    return build_model(trained.model, len(state["classes"]), trained.data.resolved_image_size)


def trained_model(
    state: dict[str, Any], path: str | Path, data_overrides: dict[str, Any] | None = None
) -> tuple[nn.Module, RunConfig]:
    """The checkpoint's model with its trained weights, in eval mode, and the run's config with
    `data_overrides` applied (to evaluate on other data or at another size)."""
    cfg = RunConfig.from_dict(state["config"]).override(data_overrides or {})
    model = fresh_model(state)
    load_model_state(model, state, cfg.model.model, path)
    return model.eval(), cfg
