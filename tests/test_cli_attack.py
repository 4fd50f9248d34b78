import csv
import json

import torch
from matplotlib.colors import to_hex
from torch import nn

from scenelab.analysis_config import ATTACK_PRESETS, AttackConfig
from scenelab.attack_eval import evaluate_attack
from scenelab.cli import attack as attack_cli
from scenelab.cli import main
from scenelab.models import Normalize
from scenelab.plots import pyplot

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


def _mirror_even_images(model, x, y, target):
    """A stand-in attack with a known answer: the images at even batch positions become 1 - x,
    which negates the logits of the model below and so flips its prediction (argmax to argmin)."""
    flip = (torch.arange(len(x)) % 2 == 0).view(-1, 1, 1, 1)
    return torch.where(flip, 1 - x, x)


def _linear_model():
    torch.manual_seed(0)
    centre = Normalize((0.5, 0.5, 0.5), (1.0, 1.0, 1.0))  # x - 0.5
    return nn.Sequential(centre, nn.Flatten(), nn.Linear(3 * 4 * 4, 3, bias=False))


def _batches():
    torch.manual_seed(1)
    x = torch.rand(10, 3, 4, 4)
    return [(x[i : i + 4], torch.zeros(len(x[i : i + 4]), dtype=torch.long)) for i in (0, 4, 8)]


def test_the_kept_examples_are_the_first_or_the_first_the_attack_flipped():
    model, cpu = _linear_model(), torch.device("cpu")
    first = evaluate_attack(model, _batches(), _mirror_even_images, device=cpu, keep=3)
    assert first.examples["index"].tolist() == [0, 1, 2]
    flipped = evaluate_attack(
        model, _batches(), _mirror_even_images, device=cpu, keep=3, select=attack_cli._flipped
    )
    assert flipped.examples["index"].tolist() == [0, 2, 4]  # even positions of each batch
    assert (flipped.examples["adv_pred"] != flipped.examples["clean_pred"]).all()
    x = torch.cat([b[0] for b in _batches()])
    torch.testing.assert_close(flipped.examples["x"], x[[0, 2, 4]])
    assert flipped.images == 10  # selecting examples changes no metric
    for key in ("clean_acc1", "adv_acc1", "linf", "l2"):
        assert getattr(flipped, key) == getattr(first, key)
    none = evaluate_attack(
        model, _batches(), lambda *a: a[1], device=cpu, keep=3, select=attack_cli._flipped
    )
    assert none.examples == {}  # nothing flipped: nothing kept


def test_the_grid_says_which_predictions_flipped_and_colours_them():
    cpu = torch.device("cpu")
    result = evaluate_attack(_linear_model(), _batches(), _mirror_even_images, device=cpu, keep=4)
    fig = attack_cli._grid([("run", result)], ["a", "b", "c"], {"run": "linear"}, "PGD title")
    try:
        assert fig._suptitle.get_text() == "PGD title"
        adversarial = [ax._left_title for ax in fig.axes[1::3]]  # clean, adversarial, perturbation
        assert ["flipped" in t.get_text().split("\n")[-1] for t in adversarial] == [
            True,
            False,
            True,
            False,
        ]
        colours = [to_hex(t.get_color()) for t in adversarial]
        assert colours == [to_hex(attack_cli.FLIPPED), to_hex(attack_cli.HELD)] * 2
    finally:
        pyplot().close(fig)


def test_select_flipped_from_the_shell_and_titles_from_the_settings(run, tmp_path, capsys):
    flags = "--eps 0.5 --steps 5 --num 2 --select flipped".split()
    assert _attack(run, *flags, "--out", str(tmp_path)) == 0
    out = tmp_path / "pgd-linf-eps0.5-s5"
    assert json.loads((out / "metrics.json").read_text())["settings"]["select"] == "flipped"
    assert (out / "grid.png").stat().st_size > 1000
    cfg = AttackConfig(eps=16 / 255, steps=3)
    title = attack_cli.attack_title(cfg, cfg.eps)
    assert title == "PGD-3 L-inf, eps 16/255, step 13.3/255, untargeted"
    l2 = AttackConfig(attack="fgsm", norm="l2", eps=0.5, target="random", clamp=False)
    assert attack_cli.attack_title(l2, l2.eps) == "FGSM L2, eps 0.5, random target, no clamp"
    assert attack_cli.attack_title(cfg) == "PGD-3 L-inf, untargeted"  # a sweep's
    course = AttackConfig(**ATTACK_PRESETS["course"])
    assert attack_cli.attack_title(course, 0.1) == (
        "PGD-10 L-inf, eps 0.1 (normalised units), step 0.01, least-likely target, "
        "no random start, no clamp"
    )


def test_linf_sizes_read_the_same_in_terminal_and_report(run, tmp_path, capsys):
    assert _attack(run, "--eps", "4/255", "--steps", "2", "--num", "1") == 0
    printed = capsys.readouterr().out
    (folder,) = (run / "attack").glob("*eps4-255-s2")
    (result,) = json.loads((folder / "metrics.json").read_text())["results"].values()
    grey = f"{result['linf'] * 255:.2f}"
    assert "mean L-inf (x/255)" in printed and grey in printed
    report = (run / "report.md").read_text()
    assert "mean L-inf (x/255)" in report and grey in report
    sweep = "--eps-sweep 0,4/255 --steps 2".split()
    assert _attack(run, *sweep) == 0
    report = (run / "report.md").read_text()
    assert "eps (x/255)" in report and "| 4 |" in report.replace("4.0 ", "4 ")


def test_the_robustness_figure_keeps_long_labels_inside_the_picture(tmp_path, monkeypatch):
    """Labels named from settings are long: the legend goes under the panels, and the saved
    picture grows to hold it rather than cutting it off or covering the lines."""
    from PIL import Image

    from scenelab import plots

    drawn = {}
    real_legend = plots.pyplot().Figure.legend

    def legend(fig, *args, **kwargs):
        drawn["legend"] = real_legend(fig, *args, **kwargs)
        return drawn["legend"]

    monkeypatch.setattr(plots.pyplot().Figure, "legend", legend)
    names = [f"simplenet, adv-train {m}, adv-eps 0.0313725" for m in ("none", "madry", "trades")]
    rows = [
        {"model": n, "eps": e / 255, "adv_acc1": 70 - 5 * e - i, "clean_acc1": 70 - i}
        for i, n in enumerate(names)
        for e in (0, 4, 8)
    ]
    path = tmp_path / "robustness.png"
    plots.plot_robustness(rows, path, labels={n: n for n in names})
    texts = [t.get_text() for t in drawn["legend"].get_texts()]
    assert texts == names
    width, height = Image.open(path).size
    assert height > 380 and width <= 1000  # 10 x 3.8 inches at 100 dpi, plus the legend below
    # no axes carries a legend of its own
    fig_axes_legends = [ax.get_legend() for ax in drawn["legend"].figure.axes]
    assert fig_axes_legends == [None, None]
