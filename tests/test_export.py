"""`scenelab export`: each format loads back and computes what the eager model computes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import scenelab
from scenelab.config import ModelConfig
from scenelab.export import ExportError, as_builtin_convs, export_model
from scenelab.models import build_model


def _eager(run: Path, x: torch.Tensor) -> torch.Tensor:
    model, _, _ = scenelab.load_run(run)
    with torch.no_grad():
        return model(x)


def _loaded_outputs(path: Path, x: torch.Tensor) -> torch.Tensor:
    if path.suffix == ".ts":
        return torch.jit.load(str(path))(x)
    if path.suffix == ".pt2":
        return torch.export.load(str(path)).module()(x)
    session = pytest.importorskip("onnxruntime").InferenceSession(str(path))
    return torch.from_numpy(session.run(None, {"image": x.numpy()})[0])


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["exported-program", "torchscript", "onnx"])
def test_each_format_loads_back_and_equals_the_eager_model(run, tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
    out = tmp_path / "export"
    result = subprocess.run(
        [sys.executable, "-m", "scenelab", "export", "--run", str(run), "--format", fmt,
         "--out", str(out)],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Expect archive file" not in result.stderr  # the temporary file keeps the suffix
    (path,) = [p for p in out.iterdir() if p.name.startswith("model.")]
    assert f"Exported: {path}" in result.stdout
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert json.loads((out / "classes.json").read_text()) == state["classes"]
    assert json.loads((out / "preprocessing.json").read_text())["center_crop"] == 32
    for batch in (1, 5):  # the batch size is dynamic
        x = torch.rand(batch, 3, 32, 32)
        torch.testing.assert_close(_loaded_outputs(path, x), _eager(run, x), rtol=1e-4, atol=1e-5)


def test_the_hand_written_convolution_exports_as_nn_conv2d_with_the_same_weights(tmp_path):
    model = build_model(ModelConfig(model="simplenet", conv="unfold"), 5).eval()
    plain = as_builtin_convs(model)
    assert {type(m).__name__ for m in plain.modules()} & {"UnfoldConv2d"} == set()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x), rtol=1e-4, atol=1e-5)
    path = export_model(model, "exported-program", tmp_path, classes=list("abcde"), image_size=32)
    torch.testing.assert_close(_loaded_outputs(path, x), plain(x), rtol=1e-4, atol=1e-5)


def test_a_format_the_model_cannot_take_names_one_that_works_and_leaves_nothing(tmp_path):
    model = build_model(ModelConfig(model="vit"), 5, 32).eval()
    out = tmp_path / "export"
    with pytest.raises(ExportError, match="cannot be exported as torchscript.*--format exported"):
        export_model(
            model, "torchscript", out, classes=list("abcde"), image_size=32, model_name="vit"
        )
    assert not out.exists()
    path = export_model(model, "exported-program", out, classes=list("abcde"), image_size=32)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(_loaded_outputs(path, x), model(x), rtol=1e-4, atol=1e-5)
