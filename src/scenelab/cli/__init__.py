"""The `scenelab` command line: the only package that reads argv, picks a device and prints.

Each subcommand builds configs from flags (generated from the config dataclasses), calls library
functions and writes results into a run folder, then prints where they are. `commands` holds
the whole command surface without importing torch, so help answers at once; one module per
group of subcommands holds what they do, imported when one of them runs.
"""

import argparse
import importlib.metadata
import os
import sys
import time

from .commands import add_commands
from .control import process_age


def _version() -> str:
    try:
        return importlib.metadata.version("scenelab")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scenelab",
        description="Train scene-recognition CNNs and ViTs on MiniPlaces, an image folder or "
        "synthetic scenes; then predict, explain and attack them. Each command prints where "
        "its results are; `scenelab COMMAND --help` lists its flags.",
    )
    parser.add_argument("--version", action="version", version=f"scenelab {_version()}")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def _for_the_user(error: Exception) -> bool:
    """Whether `error` is a message for the user (bad input or settings, not a bug): a
    ValueError (DatasetError, CheckpointError, ReportError, ... are ones) or a TrainingError."""
    train = sys.modules.get("scenelab.train")  # imported by then if the command trains
    return isinstance(error, ValueError) or (
        train is not None and isinstance(error, train.TrainingError)
    )


def main(argv: list[str] | None = None) -> int:
    """The command line (`argv` None: the process's arguments; a --time-budget then counts from
    the process's start, and from this call otherwise)."""
    started = time.perf_counter() - (process_age() if argv is None else 0.0)
    if "" not in sys.path and os.getcwd() not in sys.path:  # --model mymodule:Net, as python -m
        sys.path.insert(0, os.getcwd())
    args = build_parser().parse_args(argv)
    args.started = started
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and args.command != "train":
        print(
            f"error: only `scenelab train` runs under torchrun; run `scenelab {args.command}` "
            "as one process",
            file=sys.stderr,
        )
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not _for_the_user(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
