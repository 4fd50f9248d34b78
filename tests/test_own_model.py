"""Your own network: `--model package.module:Name` and `scenelab.register_model`, using the
documented example (examples/my_model.py) as it stands."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import scenelab
from scenelab.config import ModelConfig
from scenelab.models import MODELS, build_model

from conftest import TINY_TRAIN

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _scenelab(*args: str, cwd: Path, pythonpath: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": pythonpath}
    return subprocess.run(
        [sys.executable, "-m", "scenelab", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


@pytest.fixture
def my_model(monkeypatch):
    """The example module, imported as a user's script would import it."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    sys.modules.pop("my_model", None)
    import my_model

    yield my_model
    MODELS.pop("tinynet_wide", None)
    sys.modules.pop("my_model", None)


def test_train_predict_and_eval_a_class_named_on_the_command_line(tmp_path):
    out = tmp_path / "runs"
    (tmp_path / "my_model.py").write_text((EXAMPLES / "my_model.py").read_text())  # user's file
    result = _scenelab("train", "--model", "my_model:TinyNet", *TINY_TRAIN, "--out-dir", str(out),
                       cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run,) = out.iterdir()
    assert run.name.endswith("-TinyNet")
    photo = tmp_path / "photo.png"
    from torchvision.io import write_png

    write_png((torch.rand(3, 50, 70) * 255).byte(), str(photo))
    result = _scenelab("predict", "--run", str(run), str(photo), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = _scenelab("eval", "--checkpoint", str(run / "checkpoints/best.pt"), "--workers", "0",
                       cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    elsewhere = _scenelab("predict", "--run", str(run), str(photo), cwd=tmp_path / "runs")
    assert elsewhere.returncode == 2 and "cannot import my_model" in elsewhere.stderr
    assert "PYTHONPATH" in elsewhere.stderr and "Traceback" not in elsewhere.stderr


@pytest.mark.parametrize(
    "model, message",
    [
        ("no_such_module:Net", "cannot import no_such_module"),
        ("my_model:Nope", "my_model has no 'Nope'"),
        ("my_model:Normalize", "must take a num_classes argument"),
    ],
)
def test_a_model_that_cannot_be_built_says_why_before_any_run_folder(tmp_path, model, message):
    (tmp_path / "my_model.py").write_text((EXAMPLES / "my_model.py").read_text())
    out = tmp_path / "runs"
    result = _scenelab("train", "--model", model, *TINY_TRAIN, "--out-dir", str(out), cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not out.exists()


def test_register_model_adds_a_name_and_checkpoints_find_it_in_a_new_process(my_model, tmp_path):
    model = build_model(ModelConfig(model="tinynet_wide"), 4)
    assert isinstance(model, my_model.TinyNet) and model.net[-1].in_features == 64
    assert MODELS["tinynet_wide"].description.startswith("TinyNet with 64 channels")
    with pytest.raises(ValueError, match="already registered"):
        scenelab.register_model(name="tinynet_wide")(my_model.TinyNet)
    from scenelab.cli import main

    out = tmp_path / "runs"
    assert main(["train", "--model", "tinynet_wide", *TINY_TRAIN, "--out-dir", str(out)]) == 0
    (run,) = out.iterdir()
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert state["model_source"] == "my_model:tinynet_wide"
    photo = tmp_path / "photo.png"
    from torchvision.io import write_png

    write_png((torch.rand(3, 40, 40) * 255).byte(), str(photo))
    result = _scenelab("predict", "--run", str(run), str(photo), cwd=tmp_path,
                       pythonpath=str(EXAMPLES))  # fmt: skip
    assert result.returncode == 0, result.stderr
