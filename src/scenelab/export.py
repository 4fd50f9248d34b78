"""Export a trained model for use outside scenelab: TorchScript, ONNX or a torch.export program.

Beside the model go `classes.json` (the class names, in output order) and `preprocessing.json`
(how an image becomes the model's input), so the folder alone is enough to deploy. The model
normalises its input itself: it takes RGB floats in [0, 1].

Hand-written convolutions (`--conv unfold` or `course`) are exported as nn.Conv2d with the same
weights: they compute the same function, and the exporters only know the built-in operator.
"""

import copy
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from .data.transforms import resize_size
from .models import convert_conv

# format -> the model file's name
FORMATS = {"torchscript": "model.ts", "onnx": "model.onnx", "exported-program": "model.pt2"}
OTHER_FORMAT = {"torchscript": "exported-program", "onnx": "exported-program"}


class ExportError(ValueError):
    """The model cannot be exported in the format asked for: the message names one that works."""


def as_builtin_convs(model: nn.Module) -> nn.Module:
    """A copy of `model` whose Conv2d subclasses (the hand-written ones) are plain nn.Conv2d."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Conv2d) and type(module) is not nn.Conv2d:
            model.set_submodule(name, convert_conv(module, nn.Conv2d))
    return model.eval()


def preprocessing(image_size: int) -> dict:
    """How to turn an image into the model's input, as `data.transforms.eval_transform` does."""
    return {
        "color": "RGB",
        "resize_shorter_side": resize_size(image_size),
        "center_crop": image_size,
        "scale": "divide uint8 by 255: floats in [0, 1]",
        "normalize": "none: the model normalises its input itself",
        "layout": "NCHW float32 (batch, 3, height, width)",
        "output": "logits over classes.json, in that order (softmax for probabilities)",
    }


def _failed(fmt: str, model_name: str, error: Exception) -> ExportError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    other = OTHER_FORMAT.get(fmt, "onnx")
    return ExportError(
        f"the {model_name} model cannot be exported as {fmt}: {reason[:300]}. "
        f"Use --format {other}, which takes every scenelab model"
    )


def _write_model(model: nn.Module, fmt: str, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    if fmt == "torchscript":
        torch.jit.save(torch.jit.script(model), str(path))
    elif fmt == "exported-program":
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path))
    elif fmt == "onnx":
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),
            dynamo=True,
            external_data=False,
        )
    else:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _export(model: nn.Module, fmt: str, example: torch.Tensor, tmp: Path, model_name: str):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporters' deprecation and tracing notes
            _write_model(model, fmt, example, tmp)
    except ImportError as e:
        raise ExportError(
            f"--format {fmt} needs a package that is not installed ({e}); install the export "
            "extra: pip install 'scenelab[export]'"
        ) from None
    except Exception as e:  # the exporters raise many types; each means "cannot take it"
        raise _failed(fmt, model_name, e) from None


def export_model(
    model: nn.Module,
    fmt: str,
    out: str | Path,
    *,
    classes: list[str],
    image_size: int,
    model_name: str = "model",
) -> Path:
    """Write `model` in `fmt` to `out`/FORMATS[fmt], with classes.json and preprocessing.json.

    Nothing is left behind when the export fails (an ExportError names a format that works).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    path = out / FORMATS[fmt]
    # The format's own suffix last: torch.export warns on a .pt2 archive named otherwise.
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
    model = as_builtin_convs(model).cpu().float()
    try:
        _export(model, fmt, torch.rand(2, 3, image_size, image_size), tmp, model_name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    tmp.replace(path)
    (out / "classes.json").write_text(json.dumps(classes, indent=1) + "\n")
    (out / "preprocessing.json").write_text(json.dumps(preprocessing(image_size), indent=1) + "\n")
    return path
