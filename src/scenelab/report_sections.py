"""The run report's sections, in its order: overview, training curves, per-class accuracy, then
the eval/, explain/ and attack/ results; each gives its document blocks, none for what is absent.
"""

import csv
import json
import math
from pathlib import Path
from typing import Any

from .document import Block, Details, Figure, Gallery, Heading, Links, Table, Text
from .plots import plot_training_curves
from .tracking import RunDir


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:,.{digits}f}"
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def overview(cfg: dict, summary: dict, rows: list[dict]) -> list[Block]:
    model, data, train = cfg.get("model", {}), cfg.get("data", {}), cfg.get("train", {})
    optim = cfg.get("optim", {})
    line = (
        f"{model.get('model')} (conv {model.get('conv')}) on {data.get('data')} data at "
        f"{data.get('image_size')} px; {optim.get('optimizer')} lr {optim.get('lr')}, "
        f"batch {data.get('batch_size')}, {train.get('epochs')} epochs planned"
    )
    processes = summary.get("processes", 1)
    if processes > 1:
        line += f"; trained by {processes} processes (torchrun), the batch split among them"
    blocks: list[Block] = [Text(line)]
    if not rows:
        return blocks + [Text("No epoch has finished yet: there are no metrics to show.")]
    last = rows[-1]
    if not summary:
        figures = f"The figures are those of the {len(rows)} finished epochs."
        blocks.append(Text(f"No summary.json: the run is still going on or was stopped. {figures}"))
    seconds = [r["epoch_seconds"] for r in rows]
    best_acc1, min_loss = max(r["val_acc1"] for r in rows), min(r["val_loss"] for r in rows)
    results = [
        ("epochs", f"{len(rows)} of {train.get('epochs')}"),
        ("val top-1 (final / best)", f"{_fmt(last['val_acc1'])} / {_fmt(best_acc1)}"),
        ("val top-5", _fmt(last["val_acc5"])),
        ("train top-1 / top-5", f"{_fmt(last['train_acc1'])} / {_fmt(last['train_acc5'])}"),
        ("val loss (final / min)", f"{_fmt(last['val_loss'], 4)} / {_fmt(min_loss, 4)}"),
    ]
    if "val_robust_acc1" in last:
        results.append(
            (
                "robust top-1 (relative drop)",
                f"{_fmt(last['val_robust_acc1'])} ({_fmt(last['val_robust_drop'], 1)}%)",
            )
        )
    device = f" ({summary['device']})" if "device" in summary else ""
    results += [
        ("training time", f"{sum(seconds):,.0f} s ({sum(seconds) / len(rows):,.1f} s per epoch)"),
        ("images per second", _fmt(summary.get("images_per_second", last["images_per_second"]), 0)),
        ("peak memory", f"{max(r['peak_memory_mb'] for r in rows):,.0f} MB{device}"),
        ("parameters", _fmt(summary.get("params"))),
    ]
    accuracy = "flip TTA, " if train.get("tta") else ""
    subset, split = train.get("val_subset") or 0, last.get("val_images", 0)
    if 0 < subset < split:
        accuracy += f"all but the last epoch on {subset:,} of its {split:,} images, "
    return blocks + [
        Heading("Results"),
        Text(
            f"Accuracies in percent on the validation split ({accuracy}evaluated after every "
            f"epoch); memory is the {'largest ' if processes > 1 else ''}process's peak (CUDA: "
            "allocated tensors; CPU: resident)."
        ),
        Table(["", "value"], [[k, v] for k, v in results]),
    ]


def _lr_steps(run: RunDir):
    """(label, steps, lr) from TensorBoard's train/lr scalars, or None."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not run.tb.is_dir():
        return None
    events = EventAccumulator(str(run.tb), size_guidance={"scalars": 0}).Reload()
    if "train/lr" not in events.Tags().get("scalars", []):
        return None
    by_step = {e.step: e.value for e in events.Scalars("train/lr")}  # a resume re-logs steps
    steps = sorted(by_step)
    if len(steps) < 10:  # too short a run for a curve per step: per epoch says more
        return None
    return "lr", steps, [by_step[s] for s in steps]


def curves(run: RunDir, rows: list[dict]) -> list[Block]:
    if not rows:
        return []
    charts = plot_training_curves(rows, run.plots, _lr_steps(run))
    columns = [k for k in EPOCH_COLUMNS if any(k in r for r in rows)]
    table = [
        [_fmt(r.get(k), 6 if k == "lr" else 4 if "loss" in k else 2) for k in columns] for r in rows
    ]
    return [
        Heading("Training curves"),
        Gallery([Figure(f"{run.plots.name}/{name}", alt) for name, alt in charts]),
        Details(
            "every epoch: metrics, time and peak memory (metrics.csv)",
            [Table([EPOCH_COLUMNS[k] for k in columns], table)],
        ),
    ]


EPOCH_COLUMNS = {
    "epoch": "epoch",
    "train_loss": "train loss",
    "val_loss": "val loss",
    "train_acc1": "train top-1",
    "val_acc1": "val top-1",
    "val_acc5": "val top-5",
    "val_robust_acc1": "robust top-1",
    "lr": "lr",
    "epoch_seconds": "seconds",
    "images_per_second": "images/s",
    "peak_memory_mb": "peak MB",
}


def _read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def per_class(run: RunDir, top: int = 10) -> list[Block]:
    folder = run.final_eval
    if not (folder / "per_class.csv").is_file():
        return []
    meta = json.loads((folder / "metrics.json").read_text())
    per_class = _read_csv(folder / "per_class.csv")[1:]
    rated = [(name, int(n), float(acc)) for name, n, acc in per_class if int(n) > 0]
    ranked = sorted(rated, key=lambda r: (-r[2], r[0]))
    lowest = sorted(rated, key=lambda r: (r[2], r[0]))
    confusions = _largest_confusions(_read_csv(folder / "confusion.csv"), top)
    rel = folder.relative_to(run.root).as_posix()

    def table(rows: list[tuple[str, int, float]]) -> Table:
        return Table(
            ["class", "val images", "top-1 (%)"], [[c, str(n), f"{a:.1f}"] for c, n, a in rows]
        )

    if len(ranked) <= 2 * top:  # best and worst would overlap: one table of every class
        classes = [Heading("Every class, best first", 3), table(ranked)]
    else:
        tied = sum(r[2] == lowest[0][2] for r in rated)
        note = (
            f" ({tied} classes at {lowest[0][2]:.1f}%: the first {top} by name)"
            if tied > top
            else ""
        )
        best, worst = Heading(f"Best {top} classes", 3), Heading(f"Worst {top} classes{note}", 3)
        classes = [best, table(ranked[:top]), worst, table(lowest[:top])]
    tta = ", flip TTA" if meta.get("tta") else ""
    return [
        Heading("Per-class accuracy"),
        Text(
            f"The final model (epoch {meta.get('epoch')}{tta}) on {meta.get('images')} "
            f"validation images, from {rel}/."
        ),
        *classes,
        Heading("Largest confusions", 3),
        Table(["true class", "predicted as", "images", "share of the class (%)"], confusions),
        Figure(f"{rel}/confusion.png", "confusion matrix, rows normalised"),
        Links(
            [(f"{rel}/per_class.csv", "per_class.csv"), (f"{rel}/confusion.csv", "confusion.csv")]
        ),
    ]


def _largest_confusions(table: list[list[str]], top: int) -> list[list[str]]:
    """The `top` largest off-diagonal cells of a confusion.csv (header row, then one row per
    true class: name, counts per predicted class)."""
    classes = table[0][1:]
    cells = []
    for i, (name, *counts) in enumerate(table[1:]):
        counts = [int(c) for c in counts]
        total = max(sum(counts), 1)
        cells += [
            (c, name, classes[j], 100 * c / total) for j, c in enumerate(counts) if j != i and c > 0
        ]
    cells.sort(key=lambda c: (-c[0], -c[3], c[1]))
    return [[true, pred, str(c), f"{share:.1f}"] for c, true, pred, share in cells[:top]]


def evaluations(run: RunDir) -> list[Block]:
    found = run.eval.glob("*/metrics.json")
    folders = sorted(p.parent for p in found if p.parent != run.final_eval)
    if not folders:
        return []
    rows = []
    for folder in folders:
        m = json.loads((folder / "metrics.json").read_text())
        acc1, acc5, loss, images = (m.get(k) for k in ("acc1", "acc5", "loss", "images"))
        tta = "yes" if m.get("tta") else "no"
        rows.append([folder.name, _fmt(acc1), _fmt(acc5), _fmt(loss, 4), _fmt(images), tta])
    return [
        Heading("Evaluations"),
        Text("scenelab eval results in eval/ (each folder has per_class.csv and confusion.png)."),
        Table(["folder", "top-1", "top-5", "loss", "images", "flip TTA"], rows),
    ]


# The columns of an explanation's score.csv that the report shows, in this order
SCORE_COLUMNS = (
    "method images pointing_game mask_energy chance_energy randomised_rank_corr passes_sanity"
).split()


def explanations(run: RunDir) -> list[Block]:
    blocks: list[Block] = []
    for folder in _folders(run.explain):
        rel = folder.relative_to(run.root).as_posix()
        blocks.append(Heading(rel, 3))
        if (folder / "score.csv").is_file():
            rows = _read_csv(folder / "score.csv")
            index = [rows[0].index(k) for k in SCORE_COLUMNS if k in rows[0]]
            header = [rows[0][i] for i in index]
            table = [[_round(r[i]) for i in index] for r in rows[1:]]
            blocks += [
                Text(
                    "Saliency quality against the object masks: pointing game and mask energy "
                    "(percent; chance energy is the masks' area), and the rank correlation of "
                    "maps from the trained and a re-initialised model (sanity: below 0.5)."
                ),
                Table(header, table),
            ]
        if (folder / "grid.png").is_file():
            blocks.append(Figure(f"{rel}/grid.png", f"saliency maps: {folder.name}"))
    return [Heading("Explanations"), *blocks] if blocks else []


# An attack's results table after the model column: header, metrics.json key, decimals, scale
# (L-inf sizes in grey levels, as `scenelab attack` prints them)
ATTACK_COLUMNS = (
    ("clean top-1", "clean_acc1", 2, 1),
    ("adversarial top-1", "adv_acc1", 2, 1),
    ("adversarial top-5", "adv_acc5", 2, 1),
    ("target hit (%)", "success", 2, 1),
    ("mean L-inf (x/255)", "linf", 2, 255),
    ("mean L2", "l2", 3, 1),
    ("images", "images", 2, 1),
)


def attacks(run: RunDir) -> list[Block]:
    blocks: list[Block] = []
    for folder in _folders(run.attack):
        rel = folder.relative_to(run.root).as_posix()
        blocks.append(Heading(rel, 3))
        if (folder / "metrics.json").is_file():
            results = json.loads((folder / "metrics.json").read_text()).get("results", {})
            header = ["model", *(title for title, *_ in ATTACK_COLUMNS)]
            table = [
                [RunDir.short_name(name), *(_fmt(r[k] * x, d) for _, k, d, x in ATTACK_COLUMNS)]
                for name, r in results.items()
            ]
            blocks.append(Table(header, table))
        if (folder / "robustness.csv").is_file():
            blocks.append(_sweep_table(folder / "robustness.csv"))
        for picture in ("grid.png", "robustness.png"):
            if (folder / picture).is_file():
                blocks.append(Figure(f"{rel}/{picture}", f"{folder.name}: {picture}"))
    return [Heading("Attacks"), *blocks] if blocks else []


def _sweep_table(path: Path) -> Table:
    """robustness.csv as a table: eps and L-inf sizes in grey levels (x/255) where the sweep
    was in pixel units, as the terminal prints them."""
    header, *rows = _read_csv(path)
    pixels = "units" not in header or all(r[header.index("units")] == "pixels" for r in rows)
    scale = {"linf": 255, "eps": 255 if pixels else 1}
    titles = {"linf": "mean L-inf (x/255)", "eps": "eps (x/255)" if pixels else "eps"}
    keep = [i for i, key in enumerate(header) if key != "units"]
    table = [
        [
            RunDir.short_name(r[i])
            if header[i] == "model"
            else _round(f"{float(r[i]) * scale[header[i]]:.6g}")
            if header[i] in scale
            else _round(r[i])
            for i in keep
        ]
        for r in rows
    ]
    return Table([titles.get(header[i], header[i]) for i in keep], table)


def _folders(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []


def _round(cell: str) -> str:
    """A CSV cell with a long float shortened to 4 significant digits."""
    try:
        return f"{float(cell):.4g}" if "." in cell else cell
    except ValueError:
        return cell
