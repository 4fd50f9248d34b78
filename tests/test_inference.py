"""Using a trained run: load_run, predict and `scenelab predict` against the plain forward pass."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import scenelab
from scenelab.checkpoint import CheckpointError, load_checkpoint, trained_model
from scenelab.data.decode import decode_rgb
from scenelab.data.transforms import eval_transform
from scenelab.inference import find_images, predict_files


def _val_images(run: Path, count: int) -> list[Path]:
    """`count` validation images of the run's synthetic data, written as JPEGs of other sizes."""
    from torchvision.io import write_jpeg, write_png
    from torchvision.transforms.v2.functional import resize

    from scenelab.data.synthetic import iter_scenes

    folder = run.parent / "photos"
    folder.mkdir(exist_ok=True)
    paths = []
    for i, (image, _, _) in zip(range(count), iter_scenes(count, 96, 3, 0, "val"), strict=False):
        image = resize(image, [90 + 10 * i, 140 - 10 * i])  # any size and aspect
        path = folder / f"photo{i}.{'png' if i % 2 else 'jpg'}"
        (write_png if i % 2 else write_jpeg)(image, str(path))
        paths.append(path)
    return paths


def _oracle(run: Path, path: Path) -> torch.Tensor:
    """The softmax of the trained model's plain forward pass on the evaluation preprocessing."""
    state = load_checkpoint(run / "checkpoints" / "best.pt")
    model, cfg = trained_model(state, run / "checkpoints" / "best.pt")
    x = eval_transform(cfg.data.resolved_image_size)(decode_rgb(path))
    with torch.no_grad():
        return model(x[None]).softmax(1)[0]


def test_load_run_and_predict_give_the_plain_forward_pass_with_class_names(run):
    model, classes, transform = scenelab.load_run(run)
    assert not model.training and classes == load_checkpoint(run / "checkpoints/best.pt")["classes"]
    paths = _val_images(run, 3)
    images = torch.stack([transform(decode_rgb(p)) for p in paths])
    guesses = scenelab.predict(model, images, classes, topk=2)
    for path, top in zip(paths, guesses, strict=True):
        want = _oracle(run, path)
        values, indices = want.topk(2)
        assert [g.name for g in top] == [classes[i] for i in indices.tolist()]
        assert [g.probability for g in top] == pytest.approx(values.tolist(), abs=1e-6)
    assert len(scenelab.predict(model, images[0], classes, topk=10)[0]) == len(classes)


def test_load_run_takes_a_checkpoint_file_or_a_run_folder(run, tmp_path):
    a, _, _ = scenelab.load_run(run)
    b, _, _ = scenelab.load_run(run / "checkpoints" / "last.pt")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert a(x).shape == b(x).shape == (2, 3)
    with pytest.raises(CheckpointError, match="no checkpoints/best.pt or last.pt"):
        scenelab.load_run(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        scenelab.load_run(tmp_path / "missing")


def test_flip_tta_averages_the_logits_of_the_image_and_its_mirror(run):
    model, classes, _ = scenelab.load_run(run)
    x = torch.rand(2, 3, 32, 32)
    got = scenelab.predict(model, x, classes, topk=1, tta=True)
    with torch.no_grad():
        want = ((model(x) + model(x.flip(-1))) / 2).softmax(1).max(1)
    assert [g[0].probability for g in got] == pytest.approx(want.values.tolist(), abs=1e-6)


def test_find_images_takes_files_folders_and_globs(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/1.jpg", "a/b/2.PNG", "a/notes.txt", "3.webp"):
        (tmp_path / name).write_bytes(b"x")
    found, missing = find_images(
        [tmp_path / "a", str(tmp_path / "*.webp"), tmp_path / "none.jpg", tmp_path / "a" / "b"]
    )
    names = [p.relative_to(tmp_path).as_posix() for p in found]
    assert names == ["a/1.jpg", "a/b/2.PNG", "3.webp", "a/b/2.PNG"]
    assert len(missing) == 1 and "none.jpg: no such file" in missing[0]


def test_unreadable_files_are_reported_and_the_others_predicted(run):
    model, classes, transform = scenelab.load_run(run)
    good = _val_images(run, 2)
    bad = run.parent / "photos" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    results = list(
        predict_files(model, [good[0], bad, good[1]], classes, transform, topk=3, workers=2)
    )
    assert [r.path for r in results] == [str(good[0]), str(bad), str(good[1])]
    assert results[1].guesses == [] and "broken.jpg" in results[1].error
    assert all(len(r.guesses) == 3 and not r.error for r in (results[0], results[2]))


def _scenelab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "scenelab", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def test_predict_from_the_shell_prints_a_table_writes_csv_and_json_and_fails_on_bad_files(run):
    photos = _val_images(run, 3)
    folder = photos[0].parent
    shutil.copy(photos[0], folder / "copy.jpg")
    (folder / "broken.jpg").write_bytes(b"not an image")
    out = run.parent / "predictions"
    result = _scenelab(
        "predict",
        "--run",
        str(run),
        str(folder),
        "--topk",
        "2",
        "--out",
        str(out / "p.csv"),
        cwd=run.parent,
    )
    assert result.returncode == 1, result.stderr
    assert "broken.jpg" in result.stderr and "could not be read" in result.stderr
    assert "Traceback" not in result.stderr
    rows = list(csv.DictReader(open(out / "p.csv")))
    by_image = {}
    for row in rows:
        by_image.setdefault(Path(row["image"]).name, []).append(row)
    assert by_image["broken.jpg"][0]["error"] and not by_image["broken.jpg"][0]["class"]
    for photo in photos:
        first = by_image[photo.name][0]
        assert first["rank"] == "1" and float(first["probability"]) == pytest.approx(
            _oracle(run, photo).max().item(), abs=1e-5
        )
        assert first["class"] in result.stdout and photo.name in result.stdout
    assert len(by_image[photos[1].name]) == 2

    result = _scenelab(
        "predict", "--run", str(run), str(photos[0]), "--out", str(out / "p.json"), cwd=run.parent
    )
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads((out / "p.json").read_text())
    assert entry["error"] is None and len(entry["predictions"]) == 3  # 3 classes < topk 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "preds.txt"], "--out preds.txt: give a file name ending in .csv or .json"),
        (["--topk", "0"], "--topk: 0 must be at least 1"),
    ],
)
def test_predict_refuses_bad_flags_before_reading_anything(run, tmp_path, args, message):
    photo = _val_images(run, 1)[0]
    result = _scenelab("predict", "--run", str(run), str(photo), *args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr
    assert not any(tmp_path.iterdir())


def test_predict_with_nothing_to_read_says_so(run, tmp_path):
    result = _scenelab("predict", "--run", str(run), str(tmp_path / "*.jpg"), cwd=tmp_path)
    assert result.returncode == 2
    assert "no such file or folder" in result.stderr and "no images to predict" in result.stderr
