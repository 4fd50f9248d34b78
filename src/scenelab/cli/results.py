"""`scenelab report RUN_DIR...` (a run's report.html / report.md) and `scenelab compare
RUN_DIR...` (the results table across runs and their validation curves)."""

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from ..compare import ATTACK_COLUMNS, REPORTED_NOTE, load_run, table_cells, write_comparison
from ..document import format_table
from ..report import new_folder, write_report
from ..tracking import RunDir


def cmd_report(args: argparse.Namespace) -> int:
    for folder in args.runs:
        html, md = write_report(folder)
        print(f"Report: {html}  (also {md.name}; open it in a browser, no server needed)")
    return 0


def refresh_report(run: RunDir) -> None:
    """Rebuild the report of `run` after a command added results to it. The results are
    already saved, so a failure here is reported, not raised."""
    if not (run.config.is_file() and run.metrics_csv.is_file()):
        return  # a checkpoint outside a run folder: there is no report to refresh
    try:
        html, _ = write_report(run.root)
    except Exception as e:  # noqa: BLE001 - the command's own results are safe on disk
        print(
            f"warning: could not rebuild the report ({type(e).__name__}: {e}); the results "
            f"are saved; retry with: scenelab report {run.root}",
            file=sys.stderr,
        )
        return
    print(f"Report: {html}")


def _is_run(folder: Path) -> bool:
    return RunDir(folder).config.is_file()  # a finished run, or one still training


def _run_folders(paths: list[str]) -> list[Path]:
    """The run folders among `paths`; compare's and bench's own output folders, and any folder
    that is not a finished run, are skipped with a note (so `compare runs/*` works)."""
    runs = []
    for path in map(Path, paths):
        if _is_run(path):
            runs.append(path)
        elif path.is_dir():
            print(f"skipping {path}: not a run folder (no config.yaml)")
        else:
            raise ValueError(f"{path} is not a run folder (runs/<time>-<name>/)")
    return runs


def _run_row(folder: Path) -> list[str]:
    """run, model, data, epochs, best top-1 and date of a run folder; a run still training
    (no summary.json yet) shows its config's settings and "not finished"."""
    run = RunDir(folder)
    done = run.summary.is_file()
    if done:
        info = json.loads(run.summary.read_text())
    else:
        cfg = yaml.safe_load(run.config.read_text()) or {}
        info = {
            k: v
            for section in cfg.values()
            if isinstance(section, dict)
            for k, v in section.items()
        }
    stamp = time.localtime((run.summary if done else run.config).stat().st_mtime)
    best = info.get("best_val_acc1")
    return [
        folder.name,
        str(info.get("model", "?")),
        str(info.get("data", "?")),
        str(info.get("epochs", "?")),
        f"{best:.2f}" if isinstance(best, int | float) else "-",
        time.strftime("%Y-%m-%d %H:%M", stamp) + ("" if done else " (not finished)"),
    ]


def cmd_runs(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; give the --out-dir of your runs (default: runs)")
    rows = [_run_row(p) for p in sorted(root.iterdir()) if p.is_dir() and _is_run(p)]
    if not rows:
        print(f"no run folders in {root}")
        return 0
    header = ["run", "model", "data", "epochs", "best top-1", "date"]
    print(format_table(header, rows, left=(0, 1, 2, 5)))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    runs = _run_folders(args.runs)
    if not runs:
        raise ValueError(
            f"{', '.join(args.runs)} is not a run folder; give runs/<time>-<name>/ folders"
        )
    rows = [load_run(run, args.at_epoch) for run in runs]
    parent = Path(args.out) if args.out else runs[0].resolve().parent
    out = new_folder(parent, "compare-" + time.strftime("%Y%m%d-%H%M%S"))
    title = f"{len(rows)} runs" + (f" at epoch {args.at_epoch}" if args.at_epoch else "")
    table, attacks = write_comparison(rows, out, title=title)
    print(format_table(*table_cells(table), left=(0, 1, 2)))
    if len(table) > len(rows):  # the reports' rows follow the runs
        print(REPORTED_NOTE)
    if attacks:
        print("\nAttacks:")
        print(format_table(*table_cells(attacks, ATTACK_COLUMNS), left=(0, 1)))
    files = "results.md, results.csv, results.html, curves.png, curves_time.png"
    print(f"\nResults: {out}  ({files}{', attacks.csv' if attacks else ''})")
    return 0
