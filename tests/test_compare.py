import csv
import json
import shutil

import pytest
import yaml

from scenelab import compare
from scenelab.cli import main

from conftest import TINY_TRAIN


def test_compare_writes_the_table_and_curves_and_reads_runs_at_one_epoch(
    run, tmp_path, capsys, monkeypatch
):
    other = tmp_path / "runs"
    flags = "--epochs 3 --model vit --embed-dim 16".split()
    assert main(["train", *TINY_TRAIN, *flags, "--out-dir", str(other), "--name", "small-vit"]) == 0
    (vit,) = other.iterdir()
    capsys.readouterr()
    legends = []  # the curves are labelled by the runs' settings, not their folders
    monkeypatch.setattr(
        compare, "plot_run_curves", lambda runs, *a, **k: legends.append([n for n, _ in runs])
    )
    assert main(["compare", str(run), str(vit), "--out", str(tmp_path / "cmp")]) == 0
    assert legends[0] == ["simplenet", "vit"]  # each model's own optimiser is no difference
    printed = capsys.readouterr().out
    assert "val top-1" in printed and "small-vit" in printed
    (out,) = (tmp_path / "cmp").iterdir()
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows][:2] == ["simplenet", "vit"] and rows[1]["epochs"] == "3"
    # a SimpleNet run gets the reports' SimpleNet numbers beside it
    assert [r["run"] for r in rows][2:] == ["first report: simplenet", "second report: simplenet"]
    summary = json.loads((vit / "summary.json").read_text())
    assert float(rows[1]["wall_seconds"]) == pytest.approx(summary["wall_seconds"])
    assert float(rows[1]["images_per_second"]) == pytest.approx(summary["images_per_second"])
    minutes, seconds = divmod(round(summary["wall_seconds"]), 60)
    assert f"{minutes}:{seconds:02d}" in printed and "images/s" in printed
    assert "| val top-1 |" in (out / "results.md").read_text()
    html = (out / "results.html").read_text()
    monkeypatch.undo()
    assert main(["compare", str(run), str(vit), "--out", str(tmp_path / "cmp2")]) == 0
    (out,) = (tmp_path / "cmp2").iterdir()
    for png in ("curves.png", "curves_time.png"):
        assert png in html and (out / png).stat().st_size > 1000
    with open(vit / "metrics.csv") as f:
        train_losses = [float(r["train_loss"]) for r in csv.DictReader(f)]
    assert float(rows[1]["min_train_loss"]) == pytest.approx(min(train_losses))
    assert "min train loss" in printed and "report: vit" not in printed  # a run named small-vit

    assert main(["compare", str(run), str(vit), "--at-epoch", "1", "--out", str(tmp_path)]) == 0
    (at1,) = tmp_path.glob("compare-*")
    with open(at1 / "results.csv") as f:
        rows = list(csv.DictReader(f))[:2]  # the runs, then the reports' rows
    assert [r["epochs"] for r in rows] == ["1", "1"]
    # at epoch 1 of 2 and of 3, the runs' wall time up to there is not known
    assert [r["wall_seconds"] for r in rows] == ["nan", "nan"]
    assert float(rows[0]["images_per_second"]) > 0


def test_compare_refuses_what_it_cannot_read(run, tmp_path, capsys):
    assert main(["compare", str(run), "--at-epoch", "9", "--out", str(tmp_path)]) == 2
    assert "fewer than --at-epoch 9" in capsys.readouterr().err
    assert main(["compare", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_compare_puts_the_reports_numbers_and_attack_results_beside_the_runs(run, tmp_path, capsys):
    """A run of a course recipe gets the reports' rows; its attack/ results get a table with
    the relative drop, beside the reports' attacked numbers."""
    copy = tmp_path / "20261201-120000-simplenet-cpu"
    # without the attack results other tests may have written into the shared run
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints", "tb", "attack"))
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    cfg["train"]["name"] = "simplenet-cpu"
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    attack = copy / "attack" / "pgd-linf-course"
    attack.mkdir(parents=True)
    own = {"clean_acc1": 40.0, "clean_acc5": 70.0, "adv_acc1": 30.0, "adv_acc5": 60.0}
    results = {copy.name: own | {"images": 256}, "other": {"clean_acc1": 1.0, "adv_acc1": 0.0}}
    (attack / "metrics.json").write_text(json.dumps({"results": results}))
    capsys.readouterr()
    assert main(["compare", str(copy), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert "first report: simplenet" in printed and "44.13" in printed and "73.32" in printed
    assert "Attacks:" in printed and "pgd-linf-course" in printed and "25.00" in printed
    assert "28.62" in printed  # the first report's attacked SimpleNet
    (out,) = (tmp_path / "cmp").iterdir()
    with open(out / "attacks.csv") as f:
        attacks = list(csv.DictReader(f))
    assert attacks[0]["run"] == "simplenet-cpu" and float(attacks[0]["drop"]) == 25.0
    assert float(attacks[1]["drop"]) == pytest.approx(100 * (1 - 28.62 / 44.12))
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows][1:] == ["first report: simplenet", "second report: simplenet"]
    assert "published" in (out / "results.md").read_text()
