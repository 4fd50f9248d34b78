import csv
import json

from scenelab.cli import main

from conftest import TINY_TRAIN


def _attack(run, *flags):
    ckpt = str(run / "checkpoints" / "best.pt")
    return main(["attack", "--checkpoint", ckpt, "--workers", "0", *flags])


def test_attack_writes_metrics_a_grid_and_tensorboard_and_never_overwrites(run, capsys):
    flags = "--eps 8/255 --steps 3 --target least-likely --num 3".split()
    assert _attack(run, *flags) == 0
    out = run / "attack" / "pgd-linf-least-likely-eps8-255-s3"
    assert (out / "grid.png").stat().st_size > 1000
    saved = json.loads((out / "metrics.json").read_text())
    (result,) = saved["results"].values()
    # (a targeted attack on this barely trained model need not lower its accuracy; the attack
    # itself is checked against torchattacks in test_attack.py)
    assert result["images"] == 24 and 0 <= result["success"] <= 100
    assert 0 <= result["success"] <= 100 and 0 < result["linf"] <= 8 / 255 + 1e-6
    assert saved["settings"]["target"] == "least-likely"
    printed = capsys.readouterr().out
    assert "adv top-1" in printed and f"Results: {out}" in printed
    assert _attack(run, *flags) == 0
    assert (run / "attack" / "pgd-linf-least-likely-eps8-255-s3-1" / "grid.png").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(run / "tb")).Reload().Tags()["images"]
    assert "attack/pgd-linf-least-likely-eps8-255-s3" in tags


def test_course_preset_and_its_overrides(run, tmp_path):
    assert _attack(run, "--preset", "course", "--num", "2", "--out", str(tmp_path)) == 0
    settings = json.loads((tmp_path / "course-eps0.1-a0.01-s10" / "metrics.json").read_text())
    settings = settings["settings"]
    assert settings["units"] == "normalized" and not settings["clamp"]
    assert not settings["random_start"] and settings["include_true"]
    flags = ["--preset", "course", "--eps", "0.15", "--steps", "20", "--out", str(tmp_path)]
    assert _attack(run, *flags) == 0
    assert (tmp_path / "course-eps0.15-a0.01-s20" / "grid.png").is_file()


def test_eps_sweep_compares_two_checkpoints(run, tmp_path, capsys):
    other = tmp_path / "other"
    assert main(["train", *TINY_TRAIN, "--epochs", "1", "--out-dir", str(other)]) == 0
    (other_ckpt,) = other.glob("*/checkpoints/best.pt")
    sweep = "--eps-sweep 0,2/255,8/255 --steps 2".split()
    flags = [*sweep, "--compare-checkpoint", str(other_ckpt), "--out", str(tmp_path)]
    assert _attack(run, *flags) == 0
    out = tmp_path / "sweep-pgd-linf-s2"
    with open(out / "robustness.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and len({r["model"] for r in rows}) == 2
    first = [r for r in rows if r["model"] == rows[0]["model"]]
    assert first[0]["adv_acc1"] == first[0]["clean_acc1"]  # eps 0: the clean images
    assert float(first[2]["adv_acc1"]) <= float(first[0]["adv_acc1"])
    assert (out / "robustness.png").stat().st_size > 1000
    assert "eps 2/255" in capsys.readouterr().out
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert "attack/sweep-pgd-linf-s2" in EventAccumulator(str(run / "tb")).Reload().Tags()["images"]


def test_fgsm_l2_random_targets(run, tmp_path):
    flags = ["--attack", "fgsm", "--norm", "l2", "--eps", "0.5", "--target", "random"]
    assert _attack(run, *flags, "--out", str(tmp_path)) == 0
    saved = json.loads((tmp_path / "fgsm-l2-random-eps0.5" / "metrics.json").read_text())
    (result,) = saved["results"].values()
    assert 0 < result["l2"] <= 0.5 + 1e-6


def test_bad_settings_are_refused_with_the_reason(run, capsys):
    assert _attack(run, "--units", "normalized", "--norm", "l2") == 2
    assert "use it with --norm linf" in capsys.readouterr().err
    assert _attack(run, "--retarget") == 2
    assert "--target least-likely" in capsys.readouterr().err
    assert _attack(run, "--eps-sweep", "0,big") == 2
    assert "--eps-sweep expects numbers" in capsys.readouterr().err


def test_bench_attack_times_ours_against_torchattacks_and_checks_agreement(capsys):
    flags = "--batch-size 2 --image-size 32 --num-classes 5 --steps 2 --repeats 1".split()
    assert main(["bench", "attack", *flags]) == 0
    out = capsys.readouterr().out
    assert "scenelab/torchattacks" in out and "pixels differing %" in out
    line = next(row for row in out.splitlines() if row.startswith("PGD-2 linf, least-likely"))
    assert line.split()[-2:] == ["0", "0.000"]  # the same adversarial images


def test_bench_attack_without_torchattacks_says_how_to_install(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "torchattacks", None)  # import raises ImportError
    assert main(["bench", "attack", "--batch-size", "2", "--image-size", "32"]) == 2
    assert "pip install -e '.[test]'" in capsys.readouterr().err
