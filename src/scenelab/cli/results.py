"""`scenelab report RUN_DIR...` (a run's report.html / report.md) and `scenelab compare
RUN_DIR...` (the results table across runs and their validation curves)."""

import argparse
import sys
import time
from pathlib import Path

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


def cmd_compare(args: argparse.Namespace) -> int:
    rows = [load_run(run, args.at_epoch) for run in args.runs]
    parent = Path(args.out) if args.out else Path(args.runs[0]).resolve().parent
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


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="(re)build report.html and report.md in run folders")
    p.add_argument("runs", nargs="+", help="run folders (runs/<time>-<name>)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="results table, the reports' numbers and curves across runs")
    p.add_argument("runs", nargs="+", help="run folders (runs/<time>-<name>)")
    p.add_argument(
        "--out", help="where the new compare-<time>/ folder goes (default: beside the first run)"
    )
    p.add_argument("--at-epoch", type=int, help="read every run at this epoch")
    p.set_defaults(func=cmd_compare)
