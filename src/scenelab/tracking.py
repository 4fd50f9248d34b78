"""Run folders, metric tracking (TensorBoard + CSV/JSONL) and console progress.

`RunDir` names every file of a run, so nothing else spells a path. `Tracker` owns the run's one
`SummaryWriter` and the metrics files; `NullTracker` does nothing. `Console` reports progress:
a tqdm bar on a terminal, a compact line every `log_every` steps otherwise (readable CI logs),
nothing without a stream. The CLI creates them and passes them down.
"""

import csv
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from torch import Tensor
from tqdm import tqdm


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
    """The rows of a metrics.jsonl file ([] when absent)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Tracker:
    """TensorBoard scalars/images and one metrics row per epoch (CSV and JSONL)."""

    def __init__(self, run: RunDir, *, keep_epochs: int | None = None) -> None:
        """keep_epochs: when resuming, keep the rows of epochs <= this and drop later ones."""
        from torch.utils.tensorboard import SummaryWriter  # slow import, only when tracking

        self.run = run
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

    def log_epoch(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._rewrite()

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
    """Same methods as Tracker, does nothing (for library use and tests)."""

    rows: list[dict[str, Any]] = []

    def scalar(self, tag: str, value: float, step: int) -> None: ...
    def images(self, tag: str, grid: Tensor, step: int) -> None: ...
    def log_epoch(self, row: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


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
