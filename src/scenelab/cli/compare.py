"""`scenelab compare RUN_DIR...`: the results table across runs and their validation curves."""

import argparse
import time
from pathlib import Path

from ..bench import format_table
from ..compare import load_run, table_cells, write_comparison
from ..report import new_folder


def cmd_compare(args: argparse.Namespace) -> int:
    rows = [load_run(run, args.at_epoch) for run in args.runs]
    parent = Path(args.out) if args.out else Path(args.runs[0]).resolve().parent
    out = new_folder(parent, "compare-" + time.strftime("%Y%m%d-%H%M%S"))
    title = f"{len(rows)} runs" + (f" at epoch {args.at_epoch}" if args.at_epoch else "")
    write_comparison(rows, out, title=title)
    header, cells = table_cells(rows)
    print(format_table(header, cells, left=(0, 1, 2)))
    print(f"\nResults: {out}  (results.md, results.csv, results.html, val_curves.png)")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="results table and validation curves across runs")
    p.add_argument("runs", nargs="+", help="run folders (runs/<time>-<name>)")
    p.add_argument("--out", help="where the new compare-<time>/ folder goes (default: beside "
                   "the first run)")  # fmt: skip
    p.add_argument("--at-epoch", type=int, help="read every run at this epoch")
    p.set_defaults(func=cmd_compare)
