"""Bad input as users meet it: from the shell, with the default loader workers (2).

Each case runs `python -m scenelab ...` in a fresh process and asserts the exit status, that
stderr names the file or flag and what to do, that no traceback is printed for the user's
mistake, and that nothing is written outside the folders the command was given.
"""

import os
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import write_tiny


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]  # after `scenelab`; {data}, {out}, {tmp}, {run} are filled in
    says: list[str]  # each must appear in stderr
    prepare: str = ""  # a function of this module that damages the data first
    status: int = 2
    writes: list[str] = field(default_factory=lambda: ["out"])  # folders it may write in


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])  # a truncated JPEG


def bad_train_image(data: Path, run: Path) -> None:
    _truncate(data / "images" / "train" / "f" / "forest" / "00000002.jpg")


def bad_val_image(data: Path, run: Path) -> None:
    _truncate(data / "images" / "val" / "00000003.jpg")


def empty_train_list(data: Path, run: Path) -> None:
    (data / "train.txt").write_text("")


def empty_val_list(data: Path, run: Path) -> None:
    (data / "val.txt").write_text("\n\n")


def empty_categories(data: Path, run: Path) -> None:
    (data / "categories.txt").write_text("")


def malformed_categories(data: Path, run: Path) -> None:
    (data / "categories.txt").write_text("/a/abbey zero\n")


def _append(data: Path, split: str, line: str) -> None:
    with open(data / f"{split}.txt", "a") as f:
        f.write(line + "\n")


def absolute_path_in_list(data: Path, run: Path) -> None:
    _append(data, "train", "/etc/passwd 1")


def parent_path_in_list(data: Path, run: Path) -> None:
    _append(data, "val", "../../outside.jpg 0")


def label_out_of_range(data: Path, run: Path) -> None:
    _append(data, "val", "val/00000001.jpg 7")


def missing_image(data: Path, run: Path) -> None:
    (data / "images" / "val" / "00000002.jpg").unlink()


def a_file(data: Path, run: Path) -> None:
    (data.parent / "afile").write_text("not a folder")


def _huge_png(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (its pixel data left out): all a header
    check reads. Written as a .jpg path: decoders go by content, not by name."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def huge_train_image(data: Path, run: Path) -> None:
    (data / "images" / "train" / "f" / "forest" / "00000002.jpg").write_bytes(
        _huge_png(20000, 20000)
    )


def copy_run(data: Path, run: Path) -> None:
    shutil.copytree(run, data.parent / "myrun")


def cut_metrics(data: Path, run: Path) -> None:
    copy_run(data, run)
    with open(data.parent / "myrun" / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "train_lo')  # a kill while the row was written


def random_checkpoint(data: Path, run: Path) -> None:
    (data.parent / "random.pt").write_bytes(bytes(range(256)) * 8)


def bad_yaml_epochs(data: Path, run: Path) -> None:
    (data / "recipe.yaml").write_text("train:\n  epochs: 0\n")


def unknown_yaml_key(data: Path, run: Path) -> None:
    (data / "recipe.yaml").write_text("train:\n  epoch: 3\n")


TRAIN = "train --data miniplaces --data-root {data} --image-size 32 -b 4 --epochs 1 --out-dir {out}"


def _refused(args: str, *says: str) -> Case:
    """A flag refused while the command line is parsed: exit 2, nothing written anywhere."""
    return Case(f"{args}", args.split(), list(says), writes=[])


def _data(name: str, prepare: str, *says: str, extra: str = "") -> Case:
    return Case(name, [*TRAIN.split(), *extra.split()], list(says), prepare=prepare)


CASES = [
    Case(
        "corrupt training image, 2 workers",
        TRAIN.split(),
        ["cannot decode image", "forest/00000002.jpg", "--on-bad-image skip"],
        prepare="bad_train_image",
    ),
    Case(
        "corrupt validation image, 2 workers",
        TRAIN.split(),
        ["cannot decode image", "val/00000003.jpg", "--on-bad-image skip"],
        prepare="bad_val_image",
    ),
    Case(
        "corrupt image while caching, 2 workers",
        [*TRAIN.split(), "--cache-images"],
        ["cannot decode image", "forest/00000002.jpg", "--on-bad-image skip"],
        prepare="bad_train_image",
    ),
    _data("empty train.txt", "empty_train_list", "train.txt lists no images", "a path under"),
    _data("empty val.txt", "empty_val_list", "val.txt lists no images"),
    _data("empty categories.txt", "empty_categories", "categories.txt lists no categories"),
    _data(
        "malformed categories.txt",
        "malformed_categories",
        "categories.txt:1",
        "expected '<category path> <index>'",
    ),
    _data(
        "absolute path in train.txt",
        "absolute_path_in_list",
        "train.txt:",
        "'/etc/passwd' is not a path under images/",
    ),
    _data(
        "'..' in val.txt",
        "parent_path_in_list",
        "val.txt:",
        "'../../outside.jpg' is not a path under images/",
    ),
    _data("label out of range", "label_out_of_range", "val.txt:", "label 7 out of range 0..2"),
    _data("missing image file", "missing_image", "val/00000002.jpg"),
    _data(
        "YAML epochs 0",
        "bad_yaml_epochs",
        "'epochs': 0 must be at least 1",
        extra="-c {data}/recipe.yaml",
    ),
    _data(
        "YAML unknown key",
        "unknown_yaml_key",
        "unknown configuration keys: epoch",
        extra="-c {data}/recipe.yaml",
    ),
    Case(
        "missing --data-root",
        "train --data miniplaces --data-root {tmp}/nowhere --out-dir {out}".split(),
        ["nowhere does not exist", "--data-root"],
    ),
    Case(
        "--out-dir naming a file",
        "train --epochs 1 --synth-train 32 --synth-val 16 --out-dir {tmp}/afile".split(),
        ["afile", "Not a directory (ENOTDIR)", "give a folder's path"],
        prepare="a_file",
        status=1,
        writes=[],
    ),
    Case(
        "data download --root naming a file",
        "data download miniplaces --root {tmp}/afile".split(),
        ["afile"],
        prepare="a_file",
        status=1,
        writes=[],
    ),
    _data(
        "20000 x 20000 image",
        "huge_train_image",
        "forest/00000002.jpg: 400,000,000 pixels, more than --max-image-pixels 89,478,485",
        "--on-bad-image skip",
    ),
    Case(
        "20000 x 20000 image skipped and counted",
        [*TRAIN.split(), "--on-bad-image", "skip"],
        ["skipped 1 unreadable image"],
        prepare="huge_train_image",
        status=0,
    ),
    Case(
        "--resume a finished run",
        "train --resume {tmp}/myrun".split(),
        ["already finished its 2 epochs", "nothing to resume", "start a new run"],
        prepare="copy_run",
        writes=[],
    ),
    _refused("train --resume {tmp}/nowhere", "nowhere not found; give a run folder"),
    _refused("train --resume {data}", "has no checkpoints/last.pt to resume from"),
    Case(
        "report of a run whose last metrics line was cut",
        "report {tmp}/myrun".split(),
        ["metrics.jsonl: its last line was cut short (a killed run); left out"],
        prepare="cut_metrics",
        status=0,
        writes=["myrun"],
    ),
    Case(
        "random bytes as a checkpoint",
        "eval --checkpoint {tmp}/random.pt".split(),
        ["random.pt is not a readable checkpoint"],
        prepare="random_checkpoint",
        writes=[],
    ),
    Case(
        "explain --images naming nothing",
        "explain --run {run} --images {tmp}/nowhere.jpg".split(),
        ["--images: ", "nowhere.jpg: no such file or folder"],
        writes=[],
    ),
    _refused("train --max-image-pixels -1", "--max-image-pixels: -1 must be at least 0"),
    _refused("train --epochs 0", "--epochs: 0 must be at least 1"),
    _refused("train --epochs -1", "--epochs: -1 must be at least 1"),
    _refused("train --lr nan", "--lr: nan must be a finite number"),
    _refused("train --lr -1", "--lr: -1 must be greater than 0"),
    _refused("train --lr inf", "--lr: inf must be a finite number"),
    _refused("train --image-size 100000", "--image-size/--img-size: 100000 must be at most 2048"),
    _refused("train --device gpu", "--device: gpu is not auto, cpu, cuda, cuda:N or mps"),
    _refused("train --name ../../x", "--name: ../../x is not one folder name"),
    _refused("train --name a/b", "--name: a/b is not one folder name"),
    _refused("train -b 0", "--batch-size/-b: 0 must be at least 1"),
    _refused("train --workers -1", "--workers/-j: -1 must be at least 0"),
    _refused("train --momentum 2", "--momentum: 2 must be at most 1"),
    _refused("train --label-smoothing 1.5", "--label-smoothing: 1.5 must be at most 1"),
    _refused("train --weight-decay -0.1", "--weight-decay/--wd: -0.1 must be at least 0"),
    _refused("train --epochs x", "--epochs: expected int, got 'x'"),
    _refused("train --time-budget 0", "a time budget must be positive"),
    _refused("train --config {tmp}/none.yaml", "none.yaml not found", "bundled recipes"),
    _refused("attack --run {run} --eps -0.1", "--eps: -0.1 must be at least 0"),
    _refused("attack --run {run} --eps nan", "--eps: nan must be a finite number"),
    _refused("attack --run {run} --num 0", "--num: 0 must be at least 1"),
    _refused("attack --run {run} --steps 0", "--steps: 0 must be at least 1"),
    _refused("attack --run {run} --alpha 0", "--alpha: 0 must be greater than 0"),
    _refused("explain --run {run} --num 0", "--num: 0 must be at least 1"),
    _refused("explain --run {run} --threshold 0", "--threshold: 0 must be greater than 0"),
    _refused("eval --run {run} --device gpu", "--device: gpu is not auto, cpu"),
    _refused("eval --run {tmp}/nowhere", "nowhere not found; give a run folder or a checkpoint"),
    _refused("explain --run {tmp}", "has no checkpoints/best.pt or last.pt"),
    _refused("attack --run {tmp}/nowhere", "nowhere not found; give a run folder"),
    _refused("predict x.jpg --run {tmp}/nowhere", "nowhere not found; give a run folder"),
    _refused("export --run {tmp}/nowhere", "nowhere not found; give a run folder"),
]


def _scenelab(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "scenelab", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_gets_a_clear_error_and_writes_nothing_elsewhere(case, tmp_path, run):
    data = write_tiny(tmp_path / "data")
    if case.prepare:
        globals()[case.prepare](data, run)
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    before = _tree(tmp_path)
    fill = {"data": str(data), "out": str(out), "tmp": str(tmp_path), "run": str(run)}
    result = _scenelab([a.format(**fill) for a in case.args], cwd)
    assert result.returncode == case.status, result.stderr
    for words in case.says:
        assert words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "Caught " not in result.stderr, result.stderr
    allowed = [tmp_path / w for w in case.writes]
    new = [p for p in _tree(tmp_path) - before if not any(p.is_relative_to(a) for a in allowed)]
    assert new == [], f"written outside {case.writes}: {new}"
