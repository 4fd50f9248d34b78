import pytest
import yaml

from scenelab.cli import main
from scenelab.cli.attack import attack_config
from scenelab.cli.flags import RECIPES
from scenelab.cli.recipes import describe
from scenelab.config import RunConfig
from scenelab.course import COURSE_SETTINGS, DEPARTURES, course_settings

from conftest import TINY_TRAIN

ALL = sorted(RECIPES.glob("*.yaml"))


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_every_recipe_is_valid_for_its_command(path):
    command, text = describe(path)
    assert command in ("train", "attack") and text
    values = yaml.safe_load(path.read_text())
    if command == "train":
        cfg = RunConfig.from_dict(values)
        assert cfg.data.data == "miniplaces" and cfg.train.epochs > 0
        if path.stem.endswith("-cpu"):  # the families ranked at equal CPU time
            assert cfg.data.image_size == 64 and cfg.train.time_budget == "10m"
            assert cfg.data.cache_images and cfg.train.val_subset == 1000
            assert cfg.train.channels_last == ("vit" not in cfg.model.model)
            assert cfg.train.stop_after == 0  # a run that ends where its schedule does
            assert (RECIPES / f"{path.stem.removesuffix('-cpu')}.yaml").is_file()
    else:

        class Args:
            config, preset = str(path), None

        attack_config(Args())  # settings and data keys check out


def test_recipes_are_listed_and_usable_by_name(tmp_path, capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert all(p.stem in out for p in ALL) and "scenelab attack" in out
    flags = ["--config", "vit-cpu", "--data", "synthetic", *TINY_TRAIN, "--embed-dim", "16"]
    assert main(["train", *flags, "--out-dir", str(tmp_path)]) == 2  # --epochs vs its budget
    err = capsys.readouterr().err
    assert "--epochs 2: vit-cpu fits the run into --time-budget 10m" in err
    assert "add --time-budget off to train 2 epochs" in err and not any(tmp_path.iterdir())
    flags += ["--time-budget", "off"]
    assert main(["train", *flags, "--out-dir", str(tmp_path)]) == 0
    (run,) = tmp_path.iterdir()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["optim"]["optimizer"] == "adamw" and cfg["train"]["epochs"] == 2  # flags win
    assert cfg["train"]["time_budget"] == "" and cfg["train"]["val_subset"] == 1000
    assert run.name.endswith("vit-cpu")
    assert main(["train", "--config", "no-such-recipe"]) == 2
    assert "scenelab recipes" in capsys.readouterr().err


FULL_SCALE = [p for p in ALL if p.stem in COURSE_SETTINGS]


def _printed_config(capsys, *flags: str) -> dict:
    assert main(["train", *flags, "--print-config"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_every_full_scale_recipe_is_in_the_course_table():
    trains = {p.stem for p in ALL if describe(p)[0] == "train"}
    ours = {"cpu-5min", "cpu-30min"}  # not course experiments
    assert trains - ours - {s for s in trains if s.endswith("-cpu")} == set(COURSE_SETTINGS)


@pytest.mark.parametrize("path", FULL_SCALE, ids=[p.stem for p in FULL_SCALE])
def test_full_scale_recipes_run_the_course_settings(path, capsys):
    """Resolved as `train` resolves them, every recipe runs the course template's settings
    (course.py), each written out in its file; departures are ours, stated in its comment."""
    expected = course_settings(path.stem)
    written = yaml.safe_load(path.read_text())
    assert set(expected) <= set(written), set(expected) - set(written)
    resolved = _printed_config(capsys, "--config", path.stem)
    flat = {k: v for section in resolved.values() for k, v in section.items()}
    assert {k: flat[k] for k in expected} == expected
    comment = describe(path)[1]
    for key, (value, _) in DEPARTURES.get(path.stem, {}).items():
        assert COURSE_SETTINGS[path.stem][key] != value and "the course" in comment


def test_print_config_prints_the_resolved_settings_and_builds_nothing(tmp_path, capsys):
    flags = ["--config", "vit", "--lr", "0.002", "--out-dir", str(tmp_path / "runs")]
    cfg = _printed_config(capsys, *flags)
    assert cfg["optim"]["lr"] == 0.002 and cfg["optim"]["optimizer"] == "adamw"  # flag > recipe
    assert cfg["data"]["data_root"] is None and cfg["model"]["patch_size"] == 16  # resolved
    assert not (tmp_path / "runs").exists()  # no data, model or run folder
    saved = tmp_path / "resolved.yaml"
    saved.write_text(yaml.safe_dump(cfg))
    assert _printed_config(capsys, "--config", str(saved)) == cfg  # usable as --config
