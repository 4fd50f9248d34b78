import pytest
import yaml

from scenelab.cli import main
from scenelab.cli.attack import attack_config
from scenelab.cli.flags import RECIPES
from scenelab.cli.recipes import describe
from scenelab.config import RunConfig

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
        if path.stem.endswith("-cpu"):
            assert cfg.data.image_size == 64 and cfg.train.epochs <= 3
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
    assert main(["train", *flags, "--out-dir", str(tmp_path)]) == 0
    (run,) = tmp_path.iterdir()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["optim"]["optimizer"] == "adamw" and cfg["train"]["epochs"] == 2  # flags win
    assert run.name.endswith("vit-cpu")
    assert main(["train", "--config", "no-such-recipe"]) == 2
    assert "scenelab recipes" in capsys.readouterr().err
