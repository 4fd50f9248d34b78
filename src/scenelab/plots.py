"""Plots (matplotlib, Agg backend): training curves, confusion matrices, picture grids and
robustness curves. Each function draws one figure and saves it (or returns it for the caller to
save and close)."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .tracking import RunDir

Series = tuple[str, Sequence[float], Sequence[float]]  # (label, x, y)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_lines(
    panels: list[tuple[str, str, list[Series]]],
    path: Path,
    *,
    xlabel: str = "epoch",
    columns: int = 0,
) -> None:
    """Line charts, a panel per (title, y label, series), `columns` to a row (0: all in one),
    saved to `path`. An x label of "epoch" or "step" gets whole-number ticks."""
    plt = pyplot()
    columns = columns or len(panels)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for ax, (title, ylabel, series) in zip(axes.flat, panels, strict=False):
        for label, x, y in series:
            ax.plot(x, y, "o-" if len(x) <= 30 else "-", markersize=3, label=label)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        if xlabel in ("epoch", "step"):  # epochs and steps are whole
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_training_curves(
    rows: list[dict[str, float]], out: Path, lr_steps: Series | None = None
) -> list[tuple[str, str]]:
    """The curves of a run's metrics rows as PNGs in `out`: loss, learning rate, top-1, top-5
    and, when measured, robust top-1. `lr_steps` (label, steps, lr) plots the learning rate per
    step instead of per epoch. Returns (file name, description) pairs in display order."""
    out.mkdir(parents=True, exist_ok=True)
    epochs = [r["epoch"] for r in rows]

    def pair(key: str) -> list[Series]:
        return [(split, epochs, [r[f"{split}_{key}"] for r in rows]) for split in ("train", "val")]

    if lr_steps is not None:
        lr = ("learning rate per step", "lr", [lr_steps]), "step"
    else:
        per_epoch = [("lr", epochs, [r["lr"] for r in rows])]
        lr = ("learning rate at the end of each epoch", "lr", per_epoch), "epoch"
    charts = [  # (file, panel, x label)
        ("loss.png", ("loss", "cross-entropy", pair("loss")), "epoch"),
        ("lr.png", *lr),
        ("top1.png", ("top-1 accuracy", "accuracy (%)", pair("acc1")), "epoch"),
        ("top5.png", ("top-5 accuracy", "accuracy (%)", pair("acc5")), "epoch"),
    ]
    robust = [r for r in rows if r.get("val_robust_acc1") is not None]
    if robust:
        clean = ("clean", epochs, [r["val_acc1"] for r in rows])
        attacked = ("robust", [r["epoch"] for r in robust], [r["val_robust_acc1"] for r in robust])
        panel = ("top-1, clean and under attack", "accuracy (%)", [clean, attacked])
        charts.append(("robust.png", panel, "epoch"))
    for name, panel, xlabel in charts:
        plot_lines([panel], out / name, xlabel=xlabel)
    return [(name, panel[0]) for name, panel, _ in charts]


# The panels of curves across runs: (metrics.csv key, title, y label)
RUN_CURVES = (
    ("train_loss", "training loss", "cross-entropy"),
    ("train_acc1", "training top-1", "top-1 (%)"),
    ("val_loss", "validation loss", "cross-entropy"),
    ("val_acc1", "validation top-1", "top-1 (%)"),
)


def plot_run_curves(runs: list[tuple[str, list[dict[str, float]]]], path: Path, *, x: str) -> None:
    """Training and validation loss and top-1 of several runs overlaid, against the epoch
    (`x="epoch"`) or the training time (`x="time"`, minutes); runs: (name, metrics rows)."""

    def xs(rows: list[dict[str, float]]) -> list[float]:
        if x == "epoch":
            return [r["epoch"] for r in rows]
        return (np.cumsum([r["epoch_seconds"] for r in rows]) / 60).tolist()

    panels = [
        (title, ylabel, [(name, xs(rows), [r[key] for r in rows]) for name, rows in runs])
        for key, title, ylabel in RUN_CURVES
    ]
    xlabel = "epoch" if x == "epoch" else "training time (minutes)"
    plot_lines(panels, path, xlabel=xlabel, columns=2)


CONFUSION_VALUES = 20  # up to this many classes, each cell shows its percentage


def plot_confusion(
    confusion: torch.Tensor, classes: list[str], path: Path, title: str = ""
) -> None:
    """Row-normalised confusion matrix as a heat map, titled `title`: class names shown up to 30
    classes, and each cell's percentage of its true class up to CONFUSION_VALUES."""
    plt = pyplot()
    rates = confusion.double() / confusion.sum(1, keepdim=True).clamp_min(1)
    k = len(classes)
    size = max(4 + 0.3 * k, 0.45 * k + 2.5) if k <= CONFUSION_VALUES else 4 + 0.3 * k
    fig, ax = plt.subplots(figsize=(min(size, 16), min(size - 0.5, 15)))
    image = ax.imshow(rates.numpy(), cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    if k <= 30:
        ax.set_xticks(range(k), classes, rotation=90, fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
    if k <= CONFUSION_VALUES:
        for (i, j), rate in zip(
            ((i, j) for i in range(k) for j in range(k)), rates.flatten().tolist(), strict=True
        ):
            color = "black" if rate > 0.6 else "white"  # readable on viridis' light and dark
            ax.text(j, i, f"{100 * rate:.0f}", ha="center", va="center", fontsize=7, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def image_grid(
    columns: dict[str, torch.Tensor],
    titles: list[list[str]],
    *,
    colors: list[list[str | None]] | None = None,
    title: str = "",
):
    """A matplotlib figure: one row per image, one column per entry of `columns` (its key is
    the header), each cell titled by `titles[row][col]` (in `colors[row][col]` where given),
    the whole figure by `title`.

    A column holds images (N, 3, H, W) in [0, 1], or maps (N, H, W) drawn with a colour map.
    The caller saves and closes the figure.
    """
    plt = pyplot()
    n, k = len(titles), len(columns)
    fig, axes = plt.subplots(n, k, figsize=(2.2 * k, 2.3 * n + 0.3), squeeze=False)
    if title:
        fig.suptitle(title, fontsize=9, wrap=True)
    for col, (header, panels) in enumerate(columns.items()):
        for row in range(n):
            panel = panels[row].detach().cpu()
            ax = axes[row, col]
            if panel.ndim == 3:
                ax.imshow(panel.permute(1, 2, 0).numpy())
            else:
                ax.imshow(panel.numpy(), cmap="inferno")
            ax.set_axis_off()
            text = titles[row][col]
            style = {"color": colors[row][col]} if colors and colors[row][col] else {}
            ax.set_title(f"{header}\n{text}" if row == 0 else text, fontsize=8, loc="left", **style)
    fig.tight_layout()
    return fig


def explain_grid(
    images: torch.Tensor,
    maps: torch.Tensor,
    overlays: torch.Tensor,
    titles: list[str],
    heat_cmap: str | None = None,
    title: str = "",
):
    """One row per image (image, map, overlay), titled with `titles` (true/predicted class),
    the figure with `title`; with `heat_cmap` (a heat overlay), each overlay gets that colour
    map's bar."""
    columns = {"image": images, "map": maps, "overlay": overlays}
    fig = image_grid(columns, [[t, "", ""] for t in titles], title=title)
    if heat_cmap is not None:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        bar = ScalarMappable(norm=Normalize(0, 1), cmap=heat_cmap)
        for ax in fig.axes[2::3]:  # the overlay column, row by row
            cb = fig.colorbar(bar, ax=ax, fraction=0.046, pad=0.04, ticks=[0, 0.5, 1])
            cb.set_label("x the map's maximum", fontsize=6)
            cb.ax.tick_params(labelsize=6)
        fig.tight_layout()  # again: the bars and their labels need room
    return fig


def plot_robustness(
    rows: list[dict[str, Any]],
    path: Path,
    *,
    units: str = "pixels",
    title: str = "",
    labels: dict[str, str] | None = None,
) -> None:
    """Top-1 under attack against epsilon, a line per model; with several models, a second
    panel: the clean/robust trade-off (clean top-1 against top-1 at the largest epsilon).

    rows: model (a run folder name), eps, clean_acc1, adv_acc1; labels: each model's name in
    the legend (default: the run's name).
    """
    labels = labels or {}
    plt = pyplot()
    scale, label = 1, "epsilon (normalised units)"
    if units == "pixels":
        scale, label = 255, "epsilon (grey levels, x/255)"
    models = list(dict.fromkeys(r["model"] for r in rows))
    wide = len(models) > 1  # a second panel: the clean / robust trade-off
    fig, axes = plt.subplots(1, 2 if wide else 1, figsize=(10 if wide else 5, 3.8), squeeze=False)
    ax = axes[0, 0]
    accs = [r["adv_acc1"] for r in rows] + [r["clean_acc1"] for r in rows]
    names = [labels.get(name, RunDir.short_name(name)) for name in models]
    colours = {}
    for name, short in zip(models, names, strict=True):
        mine = [r for r in rows if r["model"] == name]
        x, y = [r["eps"] * scale for r in mine], [r["adv_acc1"] for r in mine]
        (line,) = ax.plot(x, y, "o-", label=short)
        colours[name] = line.get_color()
    ax.set(xlabel=label, ylabel="top-1 under attack (%)")
    ax.set_ylim(max(0, min(accs) - 5), min(100, max(accs) + 5))
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if wide:
        ax = axes[0, 1]
        top = max(r["eps"] for r in rows)
        named = max(map(len, names)) <= 24  # short names beside the points, long ones by colour
        for name, short in zip(models, names, strict=True):
            (r,) = [r for r in rows if r["model"] == name and r["eps"] == top]
            point = (r["clean_acc1"], r["adv_acc1"])
            ax.scatter(*point, color=colours[name])
            if named:
                ax.annotate(short, point, fontsize=8, xytext=(4, 4), textcoords="offset points")
        eps_text = f"{top * 255:g}/255" if units == "pixels" else f"{top:g}"
        ax.set(xlabel="clean top-1 (%)", ylabel=f"top-1 at epsilon {eps_text} (%)")
        trade_off = "clean / robust trade-off"
        ax.set_title(trade_off if named else f"{trade_off} (colours as in the legend)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.margins(0.25)
    fig.tight_layout()
    # One legend under the panels, in as many columns as the longest label allows: labels
    # name settings and can be long, and inside an axes they would cover the lines.
    width = fig.get_figwidth() * fig.dpi
    columns = max(1, min(len(names), int(width // (6 * max(map(len, names)) + 60))))
    handles, texts = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles,
        texts,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=columns,
        fontsize=8,
        frameon=False,
    )
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def figure_pixels(fig) -> torch.Tensor:
    """A drawn figure as a (3, H, W) float tensor in [0, 1] (for TensorBoard)."""
    fig.canvas.draw()
    rgba = torch.from_numpy(np.asarray(fig.canvas.buffer_rgba()).copy())  # (H, W, 4) uint8
    return rgba[..., :3].permute(2, 0, 1).float() / 255


def plot_samples(images: torch.Tensor, titles: list[str], path: Path, *, columns: int = 8) -> None:
    """A grid of images (N, 3, H, W) in [0, 1], each titled (its class), saved to `path`."""
    plt = pyplot()
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.8 * columns, 2.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
