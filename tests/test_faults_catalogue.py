"""Bad input as users meet it: from the shell, with the default loader workers (2).

Each case runs `python -m scenelab ...` in a fresh process and asserts the exit status, that
stderr names the file or flag and what to do, that no traceback is printed for the user's
mistake, and that nothing is written outside the folders the command was given.
"""

import os
import subprocess
import sys
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


def bad_train_image(data: Path) -> None:
    _truncate(data / "images" / "train" / "f" / "forest" / "00000002.jpg")


def bad_val_image(data: Path) -> None:
    _truncate(data / "images" / "val" / "00000003.jpg")


def empty_train_list(data: Path) -> None:
    (data / "train.txt").write_text("")


def empty_val_list(data: Path) -> None:
    (data / "val.txt").write_text("\n\n")


def empty_categories(data: Path) -> None:
    (data / "categories.txt").write_text("")


def malformed_categories(data: Path) -> None:
    (data / "categories.txt").write_text("/a/abbey zero\n")


def _append(data: Path, split: str, line: str) -> None:
    with open(data / f"{split}.txt", "a") as f:
        f.write(line + "\n")


def absolute_path_in_list(data: Path) -> None:
    _append(data, "train", "/etc/passwd 1")


def parent_path_in_list(data: Path) -> None:
    _append(data, "val", "../../outside.jpg 0")


def label_out_of_range(data: Path) -> None:
    _append(data, "val", "val/00000001.jpg 7")


def missing_image(data: Path) -> None:
    (data / "images" / "val" / "00000002.jpg").unlink()


def bad_yaml_epochs(data: Path) -> None:
    (data / "recipe.yaml").write_text("train:\n  epochs: 0\n")


def unknown_yaml_key(data: Path) -> None:
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
    env = os.environ | {"PYTHONWARNINGS": "ignore"}
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
        globals()[case.prepare](data)
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
