"""Run folders, metric tracking (TensorBoard + CSV/JSONL + console) and training progress.

`RunDir` names every file of a run, so nothing else spells a path. `Tracker` owns the run's one
`SummaryWriter`, the metrics files and the console; `NullTracker` writes nothing. `Console`
shows progress: a tqdm bar on a terminal, else a line every `log_every` steps, nothing without
a stream. `EpochLog` is one training epoch's running metrics and progress (torchvision's
`MetricLogger`). The CLI creates the tracker and passes it down.
"""

import csv
import json
import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor
from tqdm import tqdm

from .metrics import RunningSums


@dataclass(frozen=True)
class RunDir:
    root: Path

    @classmethod
    def create(cls, out_dir: str | Path, name: str) -> "RunDir":
        """A new folder `<out_dir>/<YYYYmmdd-HHMMSS>-<name>/`, never reusing an existing one."""
        stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
        root, n = Path(out_dir) / stem, 1
        while root.exists():
            root, n = Path(out_dir) / f"{stem}-{n}", n + 1
        root.mkdir(parents=True)
        return cls(root)

    @staticmethod
    def short_name(folder_name: str) -> str:
        """A run folder's name without its time stamp: 20261125-164215-demo -> demo."""
        return re.sub(r"^\d{8}-\d{6}-", "", folder_name)

    config = property(lambda self: self.root / "config.yaml")
    metrics_csv = property(lambda self: self.root / "metrics.csv")
    metrics_jsonl = property(lambda self: self.root / "metrics.jsonl")
    summary = property(lambda self: self.root / "summary.json")
    tb = property(lambda self: self.root / "tb")
    checkpoints = property(lambda self: self.root / "checkpoints")
    last = property(lambda self: self.root / "checkpoints" / "last.pt")
    best = property(lambda self: self.root / "checkpoints" / "best.pt")
    eval = property(lambda self: self.root / "eval")
    final_eval = property(lambda self: self.root / "eval" / "final-val")
    explain = property(lambda self: self.root / "explain")
    attack = property(lambda self: self.root / "attack")
    report_html = property(lambda self: self.root / "report.html")
    report_md = property(lambda self: self.root / "report.md")
    plots = property(lambda self: self.root / "plots")
    bad_images = property(lambda self: self.root / "bad_images.txt")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl file ([] when absent). A last line cut short (the process
    was killed while writing it) is left out, with a warning naming the file; a damaged line
    before the last is an error that names its line."""
    lines = path.read_text().splitlines() if path.is_file() else []
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if n < len(lines):
                raise ValueError(
                    f"{path}:{n} is not a JSON metrics row; the file is damaged (restore it, or "
                    "delete that line)"
                ) from None
            warnings.warn(
                f"{path}: its last line was cut short (a killed run); left out", stacklevel=2
            )
    return rows


# TensorBoard tag -> key of the epoch's metrics row
EPOCH_TAGS = {
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


def epoch_row(
    epoch: int, train: dict, val: dict, seconds: float, images: int, lr: float, peak_mb: float
) -> dict[str, Any]:
    """An epoch's metrics row; `val` may hold the weight average's metrics as `ema_*`."""
    ema = {f"val_ema_{k}": val[f"ema_{k}"] for k in ("loss", "acc1", "acc5") if f"ema_{k}" in val}
    return {
        "epoch": epoch,
        "train_loss": train["loss"],
        "train_acc1": train["acc1"],
        "train_acc5": train["acc5"],
        "val_loss": val["loss"],
        "val_acc1": val["acc1"],
        "val_acc5": val["acc5"],
        **ema,
        "lr": lr,
        "epoch_seconds": seconds,
        "images_per_second": images / max(seconds, 1e-9),
        "peak_memory_mb": peak_mb,
    }


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """The console's summary of an epoch's metrics row."""
    images = f" ({row['val_images']:,} images)" if "val_images" in row else ""
    line = (
        f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} acc1 "
        f"{row['train_acc1']:.2f}  val loss {row['val_loss']:.4f} acc1 {row['val_acc1']:.2f} "
        f"acc5 {row['val_acc5']:.2f}{images}  {row['epoch_seconds']:.1f}s "
        f"{row['images_per_second']:.0f} img/s"
    )
    if "val_robust_acc1" in row:
        line += f"  robust acc1 {row['val_robust_acc1']:.2f}"
    return line


class Tracker:
    """TensorBoard scalars/images, one metrics row per epoch (CSV and JSONL), and the console."""

    def __init__(
        self, run: RunDir, *, keep_epochs: int | None = None, console: "Console | None" = None
    ) -> None:
        """keep_epochs: when resuming, keep the rows of epochs <= this and drop later ones."""
        from torch.utils.tensorboard import SummaryWriter  # slow import, only when tracking

        self.run, self.console = run, console or Console()
        self.rows = read_rows(run.metrics_jsonl)
        if keep_epochs is not None:
            self.rows = [r for r in self.rows if r["epoch"] <= keep_epochs]
        self._rewrite()
        self.writer = SummaryWriter(log_dir=str(run.tb))

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def images(self, tag: str, grid: Tensor, step: int) -> None:
        """grid: (3, H, W) float in [0, 1]."""
        self.writer.add_image(tag, grid, step)

    def log_epoch(self, row: dict[str, Any], *, step: int, epochs: int) -> None:
        """An epoch's metrics row: to the metrics files, TensorBoard (at optimizer step
        `step`) and the console (as epoch `row["epoch"]` of `epochs`)."""
        self.rows.append(row)
        self._rewrite()
        for tag, key in EPOCH_TAGS.items():
            if key in row:
                self.scalar(tag, row[key], step)
        self.console.info(epoch_line(row, epochs))

    def _rewrite(self) -> None:
        fields = list(dict.fromkeys(k for row in self.rows for k in row))
        with open(self.run.metrics_csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.rows)
        self.run.metrics_jsonl.write_text("".join(json.dumps(r) + "\n" for r in self.rows))

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullTracker:
    """Same methods as Tracker, writes nothing (for library use, tests and DDP ranks > 0);
    its console is silent unless given one."""

    rows: list[dict[str, Any]] = []

    def __init__(self, console: "Console | None" = None) -> None:
        self.console = console or Console()

    def scalar(self, tag: str, value: float, step: int) -> None: ...
    def images(self, tag: str, grid: Tensor, step: int) -> None: ...
    def log_epoch(self, row: dict[str, Any], *, step: int, epochs: int) -> None: ...
    def close(self) -> None: ...

    def __enter__(self) -> "NullTracker":
        return self

    def __exit__(self, *exc: object) -> None: ...


class Progress:
    """Progress of one loop. `step(metrics)` once per iteration; `metrics` is called lazily."""

    def step(self, metrics: Callable[[], dict[str, float]] | None = None) -> None: ...
    def close(self) -> None: ...

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _BarProgress(Progress):
    def __init__(self, total: int, desc: str, stream: TextIO, every: int) -> None:
        self.bar = tqdm(total=total, desc=desc, file=stream, leave=False, dynamic_ncols=True)
        self.every, self.n = every, 0

    def step(self, metrics: Callable[[], dict[str, float]] | None = None) -> None:
        self.n += 1
        self.bar.update()
        if metrics and self.n % self.every == 0:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in metrics().items()}, refresh=False)

    def close(self) -> None:
        self.bar.close()


class _LineProgress(Progress):
    def __init__(self, total: int, desc: str, stream: TextIO, every: int) -> None:
        self.total, self.desc, self.stream, self.every, self.n = total, desc, stream, every, 0
        self.start = time.perf_counter()

    def step(self, metrics: Callable[[], dict[str, float]] | None = None) -> None:
        self.n += 1
        if self.n % self.every and self.n != self.total:
            return
        rate = self.n / max(time.perf_counter() - self.start, 1e-9)
        values = [f"{k} {v:.4g}" for k, v in (metrics() if metrics else {}).items()]
        line = " ".join([self.desc, f"{self.n}/{self.total}", *values, f"({rate:.1f} it/s)"])
        self.stream.write(line + "\n")
        self.stream.flush()


class Console:
    """Where progress and messages go; silent without a stream."""

    def __init__(self, stream: TextIO | None = None, *, log_every: int = 20) -> None:
        self.stream, self.log_every = stream, max(1, log_every)
        self.tty = bool(stream) and stream.isatty()

    def progress(self, total: int, desc: str) -> Progress:
        if self.stream is None:
            return Progress()
        kind = _BarProgress if self.tty else _LineProgress
        return kind(total, desc, self.stream, self.log_every)

    def info(self, message: str) -> None:
        if self.stream is not None:
            self.stream.write(message + "\n")
            self.stream.flush()


class EpochLog:
    """One training epoch's running metrics and progress: the tracker's console shows them as
    they go, and TensorBoard gets the loss of every optimizer step (sent in one host sync per
    console interval, `log_every` steps, and at the epoch's end) and the learning rate of every
    10th.

    It starts at the run's optimizer `step` and, for an epoch resumed part-way, at the epoch's
    `batches` done and their running `sums`; `step` and `batches` count on from there.
    """

    def __init__(
        self,
        tracker: "Tracker | NullTracker | None" = None,
        *,
        desc: str = "train",
        step: int = 0,
        batches: int = 0,
        sums: RunningSums | None = None,
    ) -> None:
        self.tracker = tracker or NullTracker()
        self.desc, self.step, self.batches, self.total = desc, step, batches, batches
        self.sums = sums or RunningSums()
        self._progress = Progress()
        self._losses: list[tuple[int, Tensor]] = []  # (step, loss) not yet sent to TensorBoard

    @contextmanager
    def progress(self, total: int) -> Iterator["EpochLog"]:
        """Show the progress of the `total` batches to come; the bar is closed even if a step
        raises. `self.total` becomes the batches of the whole epoch."""
        self.total = self.batches + total
        try:
            with self.tracker.console.progress(total, self.desc) as self._progress:
                yield self
        finally:
            self.flush()

    def update(self, n: int, **sums: Tensor) -> None:
        """A batch of `n` images and its summed metrics (on-device tensors, no host sync)."""
        self.sums.add(n, **sums)
        self.batches += 1
        self._progress.step(lambda: {"loss": self.sums.means()["loss"]})

    def optimizer_step(self, loss: Tensor, lr: float) -> None:
        """One optimizer step done; `loss` is its loss (a 0-dim tensor on the device)."""
        self.step += 1
        self._losses.append((self.step, loss.detach().float().clone()))  # the loop reuses it
        if self.step % self.tracker.console.log_every == 0:
            self.flush()
        if self.step % 10 == 0:
            self.tracker.scalar("train/lr", lr, self.step)

    def flush(self) -> None:
        """Send the steps' losses to TensorBoard: one host sync for all of them."""
        if not self._losses:
            return
        steps, losses = zip(*self._losses, strict=True)
        for step, value in zip(steps, torch.stack(losses).tolist(), strict=True):
            self.tracker.scalar("train/step_loss", value, step)
        self._losses.clear()
