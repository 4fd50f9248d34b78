import csv
import json

import pytest

from scenelab.cli import main

from conftest import TINY_TRAIN


def test_compare_writes_the_table_and_curves_and_reads_runs_at_one_epoch(run, tmp_path, capsys):
    other = tmp_path / "runs"
    flags = "--epochs 3 --model vit --embed-dim 16".split()
    assert main(["train", *TINY_TRAIN, *flags, "--out-dir", str(other), "--name", "small-vit"]) == 0
    (vit,) = other.iterdir()
    capsys.readouterr()
    assert main(["compare", str(run), str(vit), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert "val top-1" in printed and "small-vit" in printed
    (out,) = (tmp_path / "cmp").iterdir()
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["simplenet", "vit"] and rows[1]["epochs"] == "3"
    summary = json.loads((vit / "summary.json").read_text())
    assert float(rows[1]["wall_seconds"]) == pytest.approx(summary["wall_seconds"])
    assert float(rows[1]["images_per_second"]) == pytest.approx(summary["images_per_second"])
    minutes, seconds = divmod(round(summary["wall_seconds"]), 60)
    assert f"{minutes}:{seconds:02d}" in printed and "images/s" in printed
    assert "| val top-1 |" in (out / "results.md").read_text()
    assert "val_curves.png" in (out / "results.html").read_text()
    assert (out / "val_curves.png").stat().st_size > 1000

    assert main(["compare", str(run), str(vit), "--at-epoch", "1", "--out", str(tmp_path)]) == 0
    (at1,) = tmp_path.glob("compare-*")
    with open(at1 / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epochs"] for r in rows] == ["1", "1"]
    # at epoch 1 of 2 and of 3, the runs' wall time up to there is not known
    assert [r["wall_seconds"] for r in rows] == ["nan", "nan"]
    assert float(rows[0]["images_per_second"]) > 0


def test_compare_refuses_what_it_cannot_read(run, tmp_path, capsys):
    assert main(["compare", str(run), "--at-epoch", "9", "--out", str(tmp_path)]) == 2
    assert "fewer than --at-epoch 9" in capsys.readouterr().err
    assert main(["compare", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
