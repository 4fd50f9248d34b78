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


def empty_train_image(data: Path, run: Path) -> None:
    (data / "images" / "train" / "f" / "forest" / "00000002.jpg").write_bytes(b"")


def text_as_val_image(data: Path, run: Path) -> None:
    (data / "images" / "val" / "00000003.jpg").write_text("not an image\n")


def folder_as_val_image(data: Path, run: Path) -> None:
    image = data / "images" / "val" / "00000003.jpg"
    image.unlink()
    image.mkdir()


def missing_train_list(data: Path, run: Path) -> None:
    (data / "train.txt").unlink()


def missing_categories(data: Path, run: Path) -> None:
    (data / "categories.txt").unlink()


def line_without_label(data: Path, run: Path) -> None:
    _append(data, "val", "val/00000001.jpg")


def label_not_a_number(data: Path, run: Path) -> None:
    _append(data, "val", "val/00000001.jpg abc")


def negative_label(data: Path, run: Path) -> None:
    _append(data, "train", "val/00000001.jpg -1")


def duplicate_category_index(data: Path, run: Path) -> None:
    (data / "categories.txt").write_text("/a/abbey 0\n/b/bedroom 0\n/c/canyon 1\n")


def binary_list(data: Path, run: Path) -> None:
    (data / "val.txt").write_bytes(b"\xff\xfe\x00\x01 garbage \x80\n")


def crlf_lists(data: Path, run: Path) -> None:
    for name in ("train.txt", "val.txt", "categories.txt"):
        path = data / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))


def image_folder(data: Path, run: Path) -> None:
    """An ImageFolder tree (train/<class>/, val/<class>/) from the MiniPlaces images."""
    root = data.parent / "folder"
    for split in ("train", "val"):
        for i, image in enumerate(sorted((data / "images" / "val").glob("*.jpg"))):
            target = root / split / ("a" if i % 2 else "b") / image.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(image, target)


def image_folder_corrupt(data: Path, run: Path) -> None:
    image_folder(data, run)
    _truncate(next((data.parent / "folder" / "train" / "a").glob("*.jpg")))


def image_folder_without_classes(data: Path, run: Path) -> None:
    (data.parent / "folder" / "train").mkdir(parents=True)
    (data.parent / "folder" / "val").mkdir(parents=True)


def empty_checkpoint(data: Path, run: Path) -> None:
    (data.parent / "empty.pt").write_bytes(b"")


def text_checkpoint(data: Path, run: Path) -> None:
    (data.parent / "notes.pt").write_text("these are not weights\n")


def truncated_checkpoint(data: Path, run: Path) -> None:
    best = (run / "checkpoints" / "best.pt").read_bytes()
    (data.parent / "cut.pt").write_bytes(best[: len(best) // 2])


def weights_only(data: Path, run: Path) -> None:
    """A plain torch.save(model.state_dict()) of the run's model."""
    import torch

    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    torch.save(state["model"], data.parent / "weights.pt")


def truncated_last_checkpoint(data: Path, run: Path) -> None:
    copy_run(data, run)
    last = data.parent / "myrun" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])


def leftover_tmp_checkpoint(data: Path, run: Path) -> None:
    copy_run(data, run)
    (data.parent / "myrun" / "checkpoints" / "last.pt.tmp").write_bytes(b"half a checkpoint")


def text_file(data: Path, run: Path) -> None:
    (data.parent / "notes.jpg").write_text("not an image\n")


def empty_folder(data: Path, run: Path) -> None:
    (data.parent / "photos").mkdir()


def yaml_syntax_error(data: Path, run: Path) -> None:
    (data / "recipe.yaml").write_text("train:\n  epochs: [1\n  lr: 0.1\n")


def yaml_list(data: Path, run: Path) -> None:
    (data / "recipe.yaml").write_text("- epochs\n- 3\n")


def yaml_wrong_type(data: Path, run: Path) -> None:
    (data / "recipe.yaml").write_text("train:\n  epochs: three\n")


def yaml_nan_lr(data: Path, run: Path) -> None:
    (data / "recipe.yaml").write_text("optim:\n  lr: .nan\n")


def yaml_unknown_section(data: Path, run: Path) -> None:
    (data / "recipe.yaml").write_text("trian:\n  epochs: 1\n")


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
        "forest/00000002.jpg: 20000 x 20000 = 400,000,000 pixels, more than --max-image-pixels "
        "89,478,485",
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
    # images
    _data("empty (0-byte) training image", "empty_train_image", "forest/00000002.jpg"),
    _data("text file as a validation image", "text_as_val_image", "val/00000003.jpg"),
    _data("folder where an image should be", "folder_as_val_image", "val/00000003.jpg"),
    _data(
        "image over --max-image-pixels",
        "",
        "more than --max-image-pixels 100",
        "--on-bad-image skip",
        extra="--max-image-pixels 100",
    ),
    _data(
        "corrupt image with --workers 0",
        "bad_train_image",
        "cannot decode image",
        "forest/00000002.jpg",
        extra="-j 0",
    ),
    Case(
        "corrupt image skipped and counted",
        [*TRAIN.split(), "--on-bad-image", "skip"],
        ["skipped 1 unreadable image"],
        prepare="bad_train_image",
        status=0,
    ),
    Case(
        "corrupt image in an image folder",
        "train --data folder --data-root {tmp}/folder --image-size 32 -b 4 --epochs 1 "
        "--out-dir {out}".split(),
        ["cannot decode image", "--on-bad-image skip"],
        prepare="image_folder_corrupt",
    ),
    Case(
        "image folder without class folders",
        "train --data folder --data-root {tmp}/folder --out-dir {out}".split(),
        ["folder", "<class>"],
        prepare="image_folder_without_classes",
    ),
    # list files
    _data("missing train.txt", "missing_train_list", "train.txt"),
    _data("missing categories.txt", "missing_categories", "categories.txt"),
    _data("list line without a label", "line_without_label", "val.txt:"),
    _data("label not a number", "label_not_a_number", "val.txt:", "abc"),
    _data("negative label", "negative_label", "train.txt:", "-1"),
    _data("duplicate category index", "duplicate_category_index", "categories.txt"),
    _data("binary garbage as val.txt", "binary_list", "val.txt"),
    Case(
        "Windows line endings are read as usual",
        TRAIN.split(),
        [],
        prepare="crlf_lists",
        status=0,
    ),
    # checkpoints
    Case(
        "empty checkpoint file",
        "eval --checkpoint {tmp}/empty.pt".split(),
        ["empty.pt is not a readable checkpoint"],
        prepare="empty_checkpoint",
        writes=[],
    ),
    Case(
        "text file as a checkpoint",
        "predict {data}/images/val/00000001.jpg --checkpoint {tmp}/notes.pt".split(),
        ["notes.pt is not a readable checkpoint"],
        prepare="text_checkpoint",
        writes=[],
    ),
    Case(
        "truncated checkpoint",
        "export --checkpoint {tmp}/cut.pt --out {out}".split(),
        ["cut.pt is not a readable checkpoint"],
        prepare="truncated_checkpoint",
    ),
    Case(
        "weights alone without --model",
        "eval --checkpoint {tmp}/weights.pt".split(),
        ["weights.pt holds a model's weights alone", "--model"],
        prepare="weights_only",
        writes=[],
    ),
    Case(
        "weights alone with --model and the data",
        "eval --checkpoint {tmp}/weights.pt --model simplenet --synth-val 24 --synth-classes 3 "
        "--image-size 32 --out {out}".split(),
        [],
        prepare="weights_only",
        status=0,
    ),
    Case(
        "weights alone with the wrong --model",
        "eval --checkpoint {tmp}/weights.pt --model resnet_bn --synth-val 24 --synth-classes 3 "
        "--image-size 32 --out {out}".split(),
        ["weights.pt", "does not fit this resnet_bn model"],
        prepare="weights_only",
    ),
    Case(
        "--resume from a truncated last.pt",
        "train --resume {tmp}/myrun --epochs 3".split(),
        ["last.pt is not a readable checkpoint"],
        prepare="truncated_last_checkpoint",
        writes=["myrun"],
    ),
    Case(
        "a half-written last.pt.tmp beside the checkpoints",
        "eval --run {tmp}/myrun".split(),
        [],
        prepare="leftover_tmp_checkpoint",
        status=0,
        writes=["myrun"],
    ),
    # paths
    Case(
        "predict a missing file",
        "predict {tmp}/nowhere.jpg --run {run}".split(),
        ["nowhere.jpg: no such file or folder", "give image files, folders or globs"],
        writes=[],
    ),
    Case(
        "predict a text file",
        "predict {tmp}/notes.jpg --run {run}".split(),
        ["notes.jpg"],
        prepare="text_file",
        status=1,
        writes=[],
    ),
    Case(
        "predict an empty folder",
        "predict {tmp}/photos --run {run}".split(),
        ["photos"],
        prepare="empty_folder",
        writes=[],
    ),
    Case(
        "predict --out inside a file",
        "predict {data}/images/val/00000001.jpg --run {run} --out {tmp}/afile/p.csv".split(),
        ["afile", "give a folder's path"],
        prepare="a_file",
        status=1,
        writes=[],
    ),
    Case(
        "explain --images naming a text file",
        "explain --run {run} --images {tmp}/notes.jpg --out {out}".split(),
        ["notes.jpg"],
        prepare="text_file",
    ),
    _refused("compare {tmp}", "is not a run folder"),
    Case(
        "report of a folder that is no run", "report {tmp}".split(), ["not a run folder"], writes=[]
    ),
    # downloads
    Case(
        "download from an unreachable mirror",
        "data download miniplaces --root {out} --mirror http://127.0.0.1:9/".split(),
        ["http://127.0.0.1:9/data.tar.gz", "Connection refused", "download these files"],
    ),
    _refused("data download miniplaces --root {out} --sha256 nohex", "--sha256"),
    # YAML
    _data("YAML syntax error", "yaml_syntax_error", "recipe.yaml", extra="-c {data}/recipe.yaml"),
    _data("YAML list at the top", "yaml_list", "recipe.yaml", extra="-c {data}/recipe.yaml"),
    _data(
        "YAML wrong type",
        "yaml_wrong_type",
        "'epochs'",
        "three",
        extra="-c {data}/recipe.yaml",
    ),
    _data(
        "YAML lr .nan",
        "yaml_nan_lr",
        "'lr'",
        "must be a finite number",
        extra="-c {data}/recipe.yaml",
    ),
    _data(
        "YAML unknown section",
        "yaml_unknown_section",
        "trian",
        extra="-c {data}/recipe.yaml",
    ),
    # more flags, refused while parsing
    _refused("train --val-subset -1", "--val-subset: -1 must be at least 0"),
    _refused("train --val-batch-size -1", "--val-batch-size: -1 must be at least 0"),
    _refused("train --warmup-epochs -1", "--warmup-epochs: -1 must be at least 0"),
    _refused("train --clip-grad -1", "--clip-grad: -1 must be at least 0"),
    _refused("train --image-size -5", "--image-size/--img-size: -5 must be at least 0"),
    _refused("train --lr 1e400", "--lr: 1e400 must be a finite number"),
    _refused("train --opt bogus", "--optimizer/--opt", "invalid choice: 'bogus'"),
    _refused("train --conv bogus", "--conv", "invalid choice: 'bogus'"),
    _refused("train --data bogus", "--data", "invalid choice: 'bogus'"),
    _refused("train --on-bad-image bogus", "--on-bad-image", "invalid choice: 'bogus'"),
    _refused("train --synth-train 0", "--synth-train: 0 must be at least 1"),
    _refused("eval --run {run} --tta-mean bogus", "--tta-mean", "invalid choice: 'bogus'"),
    _refused("predict x.jpg --run {run} --topk 0", "--topk: 0 must be at least 1"),
    _refused("predict x.jpg --run {run} -b 0", "-b/--batch-size: 0 must be at least 1"),
    _refused("predict x.jpg --run {run} -j -1", "-j/--workers: -1 must be at least 0"),
    _refused("models --image-size 0", "--image-size: 0 must be at least 16"),
    _refused("models --num-classes 0", "--num-classes: 0 must be at least 1"),
    _refused("compare {run} --at-epoch 0", "--at-epoch: 0 must be at least 1"),
    _refused("data synth --out {out} --classes 11", "--classes: 11 must be at most 10"),
    _refused("data synth --out {out} --size 8", "--size: 8 must be at least 16"),
    _refused("data synth --out {out} --train 0", "--train: 0 must be at least 1"),
    _refused("data show --num 0", "--num: 0 must be at least 1"),
    _refused("attack --run {run} --restarts 0", "--restarts: 0 must be at least 1"),
    _refused("explain --run {run} --method bogus", "--method", "invalid choice: 'bogus'"),
    Case(
        "train --model that does not exist",
        "train --model nosuchnet --out-dir {out}".split(),
        ["unknown model 'nosuchnet'; choose from simplenet"],
        writes=[],
    ),
    Case(
        "train --model module:Class that cannot be imported",
        "train --model nosuchpackage.nets:Net --out-dir {out}".split(),
        ["nosuchpackage"],
        writes=[],
    ),
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
    partial = [p for p in _tree(tmp_path) - before if {".tmp", ".part"} & set(p.suffixes)]
    assert partial == [], f"partial files left: {partial}"
    allowed = [tmp_path / w for w in case.writes]
    new = [p for p in _tree(tmp_path) - before if not any(p.is_relative_to(a) for a in allowed)]
    assert new == [], f"written outside {case.writes}: {new}"


# The Python API, called as a user's script calls it: each call must raise an exception whose
# message says what is wrong.
API_CASES = [
    ("pgd on NaN images", "scenelab.pgd(model, x * float('nan'), y)", "NaN"),
    ("pgd with a negative eps", "scenelab.pgd(model, x, y, eps=-0.1)", "eps must be"),
    ("pgd on an empty batch", "scenelab.pgd(model, x[:0], y[:0])", "empty batch"),
    ("fgsm on normalised images", "scenelab.fgsm(model, x - 0.5, y)", "[0, 1]"),
    ("saliency of NaN images", "scenelab.saliency(model, x * float('nan'))", "NaN"),
    ("smoothgrad with no samples", "scenelab.smoothgrad(model, x, samples=0)", "samples"),
    ("integrated gradients, 0 steps", "scenelab.integrated_gradients(model, x, steps=0)", "steps"),
    ("grad_cam of a missing layer", "scenelab.grad_cam(model, x, layer='nope')", "nope"),
    ("rollout of a CNN", "scenelab.attention_rollout(model, x)", "needs a ViT"),
    ("load_run of a missing path", "scenelab.load_run(str(tmp / 'nowhere'))", "nowhere"),
    ("predict with too few class names", "scenelab.predict(model, x, ['a'])", "class"),
    (
        "UnfoldConv2d with reflect padding",
        "scenelab.UnfoldConv2d(3, 8, 3, padding=1, padding_mode='reflect')",
        "padding_mode='zeros'",
    ),
    ("an unknown model", "scenelab.build_model(ModelConfig(model='nosuchnet'), 3)", "nosuchnet"),
]


@pytest.mark.parametrize("name, code, says", API_CASES, ids=[c[0] for c in API_CASES])
def test_the_python_api_refuses_bad_input_with_a_message(name, code, says, tmp_path):
    import torch

    import scenelab
    from scenelab.config import ModelConfig

    torch.manual_seed(0)
    model = scenelab.build_model(ModelConfig(model="simplenet"), 3, 32).eval()
    scope = {"scenelab": scenelab, "ModelConfig": ModelConfig, "model": model, "tmp": tmp_path}
    scope |= {"x": torch.rand(2, 3, 32, 32), "y": torch.tensor([0, 1])}
    with pytest.raises((ValueError, TypeError, FileNotFoundError)) as error:
        eval(code, scope)
    assert says in str(error.value), str(error.value)
    assert list(tmp_path.iterdir()) == []


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: a read-only one of ours, or, as root
    (who ignores permissions), one in /sys, which even root cannot write."""
    if os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    probe = Path("/sys/scenelab-probe")
    try:
        probe.mkdir()
    except OSError:
        return Path("/sys")
    probe.rmdir()
    pytest.skip("/sys is writable here: no folder refuses a root process")


def test_an_out_dir_that_cannot_be_written_is_named_with_its_cause(tmp_path):
    out = _unwritable_folder(tmp_path) / "runs"
    args = ["train", "--epochs", "1", "--synth-train", "16", "--synth-val", "8", "--out-dir"]
    result = _scenelab([*args, str(out)], tmp_path)
    assert result.returncode == 1, result.stderr
    assert str(out) in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert any(
        advice in result.stderr
        for advice in ("give a folder you can write to", "give a folder on a writable disk")
    ), result.stderr
    assert not out.exists()
