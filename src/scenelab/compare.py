"""Results across runs: the course's table (Markdown, CSV, HTML) and overlaid validation curves.

Each run folder is read from its `summary.json`, `metrics.csv` and `config.yaml`. The wall
time is the whole run's, from the command's start to its summary (start-up, decoding,
training and validation; `summary.json`'s `wall_seconds`), in m:ss; images/s are training
images per second of training time. With `at_epoch`, every run is read at that epoch
(accuracies of that epoch, minimum loss, time per epoch, images/s and peak memory over the
epochs up to it; the wall time only for a run that ended there), as the course compared the
hand-written convolution at epoch 10 of a 60-epoch schedule.
"""

import csv
import json
import math
from pathlib import Path
from typing import Any

import yaml

from .document import Figure, Table, to_html, to_markdown
from .plots import plot_val_curves
from .tracking import RunDir

COLUMNS = {  # key: header
    "run": "run",
    "model": "model",
    "conv": "conv",
    "epochs": "epochs",
    "image_size": "image size",
    "train_acc1": "train top-1",
    "train_acc5": "train top-5",
    "val_acc1": "val top-1",
    "val_acc5": "val top-5",
    "min_val_loss": "min val loss",
    "robust_acc1": "robust top-1",
    "wall_seconds": "wall time",
    "seconds_per_epoch": "s / epoch",
    "images_per_second": "images/s",
    "peak_memory_mb": "peak MB",
    "params": "params",
}


class CompareError(ValueError):
    """A run folder cannot be read for the comparison."""


def _metrics(run: Path) -> list[dict[str, float]]:
    path = run / "metrics.csv"
    if not path.is_file():
        raise CompareError(f"{run} is not a run folder (no metrics.csv); pass runs/<time>-<name>")
    with open(path) as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def _read(path: Path, parse) -> dict[str, Any]:
    return parse(path.read_text()) if path.is_file() else {}


def load_run(run: str | Path, at_epoch: int | None = None) -> dict[str, Any]:
    """One row of the table for the run folder `run`."""
    run = Path(run)
    rows = _metrics(run)
    if not rows:
        raise CompareError(f"{run} has no finished epoch yet")
    if at_epoch is not None:
        if at_epoch > len(rows):
            raise CompareError(f"{run} has {len(rows)} epochs, fewer than --at-epoch {at_epoch}")
        rows = rows[:at_epoch]
    summary = _read(run / "summary.json", json.loads)  # absent while a run is going on
    cfg = _read(run / "config.yaml", yaml.safe_load)
    last = rows[-1]
    seconds = sum(r["epoch_seconds"] for r in rows)
    # The whole run's wall time (start-up, decoding, validation): known only at its end.
    finished = summary.get("epochs") == int(last["epoch"])
    return {
        "run": RunDir.short_name(run.name),
        "model": cfg.get("model", {}).get("model", summary.get("model", "?")),
        "conv": cfg.get("model", {}).get("conv", summary.get("conv", "?")),
        "epochs": int(last["epoch"]),
        "image_size": cfg.get("data", {}).get("image_size", summary.get("image_size", "?")),
        "train_acc1": last["train_acc1"],
        "train_acc5": last["train_acc5"],
        "val_acc1": last["val_acc1"],
        "val_acc5": last["val_acc5"],
        "min_val_loss": min(r["val_loss"] for r in rows),
        "robust_acc1": last.get("val_robust_acc1", math.nan),
        "wall_seconds": summary.get("wall_seconds", math.nan) if finished else math.nan,
        "seconds_per_epoch": seconds / len(rows),
        "images_per_second": sum(r["images_per_second"] * r["epoch_seconds"] for r in rows)
        / max(seconds, 1e-9),
        "peak_memory_mb": max(r["peak_memory_mb"] for r in rows),
        "params": summary.get("params", math.nan),
        "curve": [(int(r["epoch"]), r["val_acc1"], r["val_loss"]) for r in rows],
    }


def _cell(key: str, value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if key == "params":
        return f"{int(value):,}"
    if key == "wall_seconds":
        minutes, seconds = divmod(round(value), 60)
        return (
            f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"
            if minutes >= 60
            else f"{minutes}:{seconds:02d}"
        )
    if key == "images_per_second":
        return f"{value:.0f}"
    if key in ("seconds_per_epoch", "peak_memory_mb"):
        return f"{value:.0f}" if value >= 100 else f"{value:.1f}"
    if key == "min_val_loss":
        return f"{value:.3f}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def table_cells(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    return list(COLUMNS.values()), [[_cell(k, r[k]) for k in COLUMNS] for r in rows]


def write_comparison(rows: list[dict[str, Any]], out: Path, *, title: str) -> None:
    """results.md, results.csv, results.html and val_curves.png in `out`."""
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows({k: r[k] for k in COLUMNS} for r in rows)
    plot_val_curves([(r["run"], r["curve"]) for r in rows], out / "val_curves.png")
    blocks = [Table(*table_cells(rows)), Figure("val_curves.png", "validation curves")]
    (out / "results.md").write_text(to_markdown(title, blocks))
    (out / "results.html").write_text(to_html(title, blocks))
