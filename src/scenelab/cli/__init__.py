"""The `scenelab` command line: the only package that reads argv, picks a device and prints.

Each subcommand builds configs from flags (generated from the config dataclasses), calls library
functions and writes results into a run folder, then prints where they are. `commands` holds
the whole command surface without importing torch, so help answers at once; one module per
group of subcommands holds what they do, imported when one of them runs.
"""

import argparse
import errno
import importlib.metadata
import os
import sys
import time
import warnings
from pathlib import Path

from .commands import add_commands
from .control import process_age, restart_with_tuned_allocator


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


# What to do about an operating-system error on a path the user gave, by its errno.
_OS_ADVICE = {
    errno.ENOSPC: "free some space on that disk, or give another --out-dir",
    errno.EDQUOT: "free some space on that disk, or give another --out-dir",
    errno.EACCES: "give a folder you can write to, or change its permissions",
    errno.EPERM: "give a folder you can write to, or change its permissions",
    errno.EROFS: "give a folder on a writable disk",
    errno.EEXIST: "it is a file where a folder is needed: give a folder's path",
    errno.ENOTDIR: "part of it is a file where a folder is needed: give a folder's path",
    errno.EISDIR: "it is a folder where a file is needed: give a file's path",
    errno.ENOENT: "check the path",
}


def os_error_message(error: OSError) -> str | None:
    """A user's message for an OS error on a path (disk full, no permission, a file where a
    folder should be), or None for one that names no path (a bug to show as a traceback)."""
    if error.filename is None or error.errno not in _OS_ADVICE:
        return None
    name = errno.errorcode.get(error.errno, "")
    return f"{error.filename}: {error.strerror} ({name}); {_OS_ADVICE[error.errno]}"


_PACKAGE = Path(__file__).resolve().parent.parent
_default_format = warnings.formatwarning


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """scenelab's own warnings read as a note to the user; others keep Python's format."""
    if Path(filename).resolve().is_relative_to(_PACKAGE):
        return f"warning: {message}\n"
    return _default_format(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> int:
    """The command line (`argv` None: the process's arguments; a --time-budget then counts from
    the process's start, and from this call otherwise)."""
    started = time.perf_counter() - (process_age() if argv is None else 0.0)
    if "" not in sys.path and os.getcwd() not in sys.path:  # --model mymodule:Net, as python -m
        sys.path.insert(0, os.getcwd())
    warnings.formatwarning = _format_warning
    args = build_parser().parse_args(argv)
    if argv is None:  # this process's own command line: glibc set up before any work
        restart_with_tuned_allocator()
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
    except OSError as e:
        message = os_error_message(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    except Exception as e:
        if not _for_the_user(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
