"""Results across runs: the course's table (Markdown, CSV, HTML) and overlaid curves.

Each run folder is read from its `summary.json`, `metrics.csv` and `config.yaml`. The wall
time is the whole run's, from the command's start to its summary (start-up, decoding,
training and validation; `summary.json`'s `wall_seconds`), in m:ss; images/s are training
images per second of training time. With `at_epoch`, every run is read at that epoch
(accuracies of that epoch, minimum loss, time per epoch, images/s and peak memory over the
epochs up to it; the wall time only for a run that ended there), as the course compared the
hand-written convolution at epoch 10 of a 60-epoch schedule.

Beside the runs: the course reports' published numbers for the recipes the runs come from
(`course.REPORTED`, rows marked "report"), and a second table of each run's attack results
(its `attack/*/metrics.json`: clean and attacked top-1/top-5 and the relative drop) with the
reports' attacked numbers. Curves: training and validation loss and top-1 of every run,
against the epoch (`curves.png`) and against the training time (`curves_time.png`).
"""

import csv
import json
import math
from pathlib import Path
from typing import Any

import yaml

from .course import ATTACKED, REPORTED, recipe_of
from .document import Figure, Heading, Table, Text, to_html, to_markdown
from .labels import setting_labels
from .plots import plot_run_curves
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
    "min_train_loss": "min train loss",
    "min_val_loss": "min val loss",
    "robust_acc1": "robust top-1",
    "wall_seconds": "wall time",
    "seconds_per_epoch": "s / epoch",
    "images_per_second": "images/s",
    "peak_memory_mb": "peak MB",
    "params": "params",
}


ATTACK_COLUMNS = {  # key: header
    "run": "run",
    "attack": "attack",
    "clean_acc1": "clean top-1",
    "clean_acc5": "clean top-5",
    "adv_acc1": "attacked top-1",
    "adv_acc5": "attacked top-5",
    "drop": "drop (%)",
    "images": "images",
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
    name = cfg.get("train", {}).get("name") or RunDir.short_name(run.name)
    return {
        "run": RunDir.short_name(run.name),
        "recipe": recipe_of(name),
        "model": cfg.get("model", {}).get("model", summary.get("model", "?")),
        "conv": cfg.get("model", {}).get("conv", summary.get("conv", "?")),
        "epochs": int(last["epoch"]),
        "image_size": cfg.get("data", {}).get("image_size", summary.get("image_size", "?")),
        "train_acc1": last["train_acc1"],
        "train_acc5": last["train_acc5"],
        "val_acc1": last["val_acc1"],
        "val_acc5": last["val_acc5"],
        "min_train_loss": min(r["train_loss"] for r in rows),
        "min_val_loss": min(r["val_loss"] for r in rows),
        "robust_acc1": last.get("val_robust_acc1", math.nan),
        "wall_seconds": summary.get("wall_seconds", math.nan) if finished else math.nan,
        "seconds_per_epoch": seconds / len(rows),
        "images_per_second": sum(r["images_per_second"] * r["epoch_seconds"] for r in rows)
        / max(seconds, 1e-9),
        "peak_memory_mb": max(r["peak_memory_mb"] for r in rows),
        "params": summary.get("params", math.nan),
        "curve": rows,
        "config": cfg,  # for the figures' labels
        "attacks": _attacks(run),
    }


def _attacks(run: Path) -> list[dict[str, Any]]:
    """The run's own results in each of its attack/ folders (`scenelab attack`)."""
    found = []
    for path in sorted(run.glob("attack/*/metrics.json")):
        results = json.loads(path.read_text()).get("results", {})
        own = results.get(run.name) or next(iter(results.values()), None)
        if own is None:
            continue
        drop = _drop(own["clean_acc1"], own["adv_acc1"])
        found.append(
            {"run": RunDir.short_name(run.name), "attack": path.parent.name, "drop": drop}
            | {
                k: own.get(k, math.nan)
                for k in ATTACK_COLUMNS
                if k not in ("run", "attack", "drop")
            }
        )
    return found


def _drop(clean: float | None, attacked: float) -> float:
    """The relative drop of top-1 under attack, in percent (NaN without a clean top-1)."""
    return 100 * (1 - attacked / clean) if clean else math.nan


def reported_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reports' published numbers for the recipes of `rows`, as rows of the table."""
    out = []
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        for rep in REPORTED.get(recipe, ()):
            note = f" ({rep.note})" if rep.note else ""
            row = {k: math.nan for k in COLUMNS} | {"model": "-", "conv": "-"}
            acc5 = math.nan if rep.acc5 is None else rep.acc5
            out.append(
                row
                | {"run": f"{rep.source}: {recipe}{note}", "val_acc1": rep.acc1, "val_acc5": acc5}
            )
    return out


def attack_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every run's attack results, then the reports' attacked numbers for the same recipes."""
    out = [a for r in rows for a in r["attacks"]]
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        for source, clean, attacked, attacked5 in ATTACKED.get(recipe, ()):
            nan = math.nan
            out.append(
                {k: nan for k in ATTACK_COLUMNS}
                | {"run": f"{source}: {recipe}", "attack": "the course's"}
                | {"clean_acc1": clean or nan, "adv_acc1": attacked, "drop": _drop(clean, attacked)}
                | {"adv_acc5": nan if attacked5 is None else attacked5}
            )
    return out


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
    if key in ("min_val_loss", "min_train_loss"):
        return f"{value:.3f}"
    if key == "images":
        return f"{value:.0f}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def table_cells(
    rows: list[dict[str, Any]], columns: dict[str, str] = COLUMNS
) -> tuple[list[str], list[list[str]]]:
    return list(columns.values()), [[_cell(k, r[k]) for k in columns] for r in rows]


def write_comparison(
    rows: list[dict[str, Any]], out: Path, *, title: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """results.md, results.csv, results.html, curves.png and curves_time.png in `out`, and
    attacks.csv when a run has attack results or a report attacked its recipe. Returns the
    rows written: the runs' with the reports' (results), and the attacks' (maybe none)."""
    table = rows + reported_rows(rows)
    _write_csv(out / "results.csv", table, COLUMNS)
    labels = setting_labels([r["config"] for r in rows], [r["run"] for r in rows])
    runs = [(label, r["curve"]) for label, r in zip(labels, rows, strict=True)]
    plot_run_curves(runs, out / "curves.png", x="epoch")
    plot_run_curves(runs, out / "curves_time.png", x="time")
    blocks = [Table(*table_cells(table))]
    if len(table) > len(rows):
        blocks.append(Text(REPORTED_NOTE))
    attacks = attack_rows(rows)
    if attacks:
        _write_csv(out / "attacks.csv", attacks, ATTACK_COLUMNS)
        blocks += [Heading("Attacks", 2), Table(*table_cells(attacks, ATTACK_COLUMNS))]
    blocks += [
        Figure("curves.png", "training and validation curves by epoch"),
        Figure("curves_time.png", "the same curves against training time"),
    ]
    (out / "results.md").write_text(to_markdown(title, blocks))
    (out / "results.html").write_text(to_html(title, blocks))
    return table, attacks


REPORTED_NOTE = (
    "Rows named after a report are the numbers the course's reports published for the same "
    "recipe at full scale (128 px, the course's epochs), not runs of this comparison."
)


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: dict[str, str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows({k: r[k] for k in columns} for r in rows)
