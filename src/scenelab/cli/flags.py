"""Command-line flags generated from the config dataclasses, and the --config YAML layer."""

import argparse
import re
from collections.abc import Callable
from dataclasses import Field, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from ..config import DEVICE, DEVICES
from ..fields import field_kind, out_of_bounds, parse_ints, parse_number
from ..run_paths import locate_checkpoint


def _ints(text: str) -> tuple[int, ...]:
    try:
        return parse_ints(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers such as 1,3, got {text!r}") from None


def _number(text: str) -> float:
    try:
        return parse_number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number such as 0.03 or 8/255, got {text!r}"
        ) from None


def _bounded(f: Field, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """The flag's type: `convert`, then the field's bounds (argparse names the flag)."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:  # int("x"): argparse's own message, as for any typed flag
            raise argparse.ArgumentTypeError(
                f"expected {getattr(convert, '__name__', 'a value')}, got {text!r}"
            ) from None
        problem = out_of_bounds(f, value)
        if problem:
            raise argparse.ArgumentTypeError(f"{text} {problem}")
        return value

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """The type of an integer flag outside the config sections, refused outside [low, high]
    while parsing with the same message as a config flag's."""
    bounds = {"low": low} if high is None else {"low": low, "high": high}
    return _bounded(field(metadata=bounds), int)


# Help-group titles of the config sections (any other class: its name without "Config")
GROUP_TITLES = {
    "DataConfig": "data",
    "ModelConfig": "model",
    "OptimConfig": "optimiser",
    "TrainConfig": "training",
    "AdvConfig": "adversarial training",
    "ExplainConfig": "explain",
    "AttackConfig": "attack",
}

# The short names users bring from timm's and torchvision's training scripts
ALIASES = {
    "batch_size": ["-b"],
    "workers": ["-j"],
    "weight_decay": ["--wd"],
    "image_size": ["--img-size"],
    "optimizer": ["--opt"],
}


def group_title(cls: type) -> str:
    name = cls.__name__
    return GROUP_TITLES.get(name, "benchmark" if name.endswith("BenchConfig") else name)


def add_config_flags(
    parser: argparse.ArgumentParser, *classes: type, skip: tuple[str, ...] = ()
) -> None:
    """One flag per dataclass field (but those in `skip`); unset flags stay out of the
    namespace (SUPPRESS), so the layering defaults < --config file < command line happens in
    `RunConfig.override`."""
    for cls in classes:
        group = parser.add_argument_group(group_title(cls))
        hints = get_type_hints(cls)
        for f in fields(cls):
            if f.name in skip:
                continue
            kind = field_kind(hints[f.name])
            kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
            default = "the model's" if f.metadata.get("arch") else f.default
            kwargs["help"] = f.metadata["help"]
            if "default" not in kwargs["help"]:  # the help may say it better
                kwargs["help"] += f" (default: {default})"
            if kind is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif kind is tuple:
                kwargs.update(type=_ints, metavar="N,N")
            else:
                kwargs["type"] = _bounded(f, _number if kind is float else kind)
                kwargs["choices"] = f.metadata.get("choices")
            names = ["--" + f.name.replace("_", "-"), *ALIASES.get(f.name, [])]
            group.add_argument(*names, **kwargs)


def checkpoint_path(value: str) -> str:
    """argparse type of --checkpoint/--run: a checkpoint file, or a run folder's best.pt (else
    its last.pt); anything else is refused while the flags are parsed."""
    found, why = locate_checkpoint(value)
    if found is None:
        raise argparse.ArgumentTypeError(why)
    return str(found)


def resume_path(value: str) -> str:
    """argparse type of --resume: a checkpoint file, or a run folder's checkpoints/last.pt (the
    latest state, which resuming needs; best.pt may be epochs behind)."""
    path = Path(value)
    if path.is_dir():
        last = path / "checkpoints" / "last.pt"
        if not last.is_file():
            raise argparse.ArgumentTypeError(
                f"{path} has no checkpoints/last.pt to resume from; give a run folder that saved "
                "one (at an epoch's end, or with --checkpoint-every), or a checkpoint file"
            )
        return str(last)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{path} not found; give a run folder or its last.pt")
    return str(path)


def add_checkpoint_flag(parser: argparse.ArgumentParser) -> None:
    """--checkpoint (alias --run), the same in every command that reads a trained model."""
    parser.add_argument(
        "--checkpoint",
        "--run",
        required=True,
        type=checkpoint_path,
        help="a checkpoint file, or a run folder (its best.pt, else last.pt)",
    )


def device_name(text: str) -> str:
    """argparse type of --device: refused while parsing unless auto, cpu, cuda, cuda:N, mps."""
    if not re.fullmatch(DEVICE, text):
        raise argparse.ArgumentTypeError(f"{text} is not {DEVICES}")
    return text


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", type=device_name, help=DEVICES)


def add_checkpoint_flags(parser: argparse.ArgumentParser, results: str) -> None:
    """The flags shared by the commands that read a trained model (eval, explain, attack)."""
    add_checkpoint_flag(parser)
    add_device_flag(parser)
    parser.add_argument("--out", help=f"output folder (default: <run>/{results}/)")


def given(args: argparse.Namespace, *classes: type) -> dict[str, Any]:
    """The fields of `classes` set on the command line."""
    names = {f.name for cls in classes for f in fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def recipe_path(path: str) -> Path:
    """A YAML file, or the name of a bundled recipe (`vit-cpu` for recipes/vit-cpu.yaml)."""
    if Path(path).is_file():
        return Path(path)
    bundled = RECIPES / (Path(path).name if path.endswith(".yaml") else f"{path}.yaml")
    if bundled.is_file():
        return bundled
    raise ValueError(f"config file {path} not found (bundled recipes: `scenelab recipes`)")


def load_yaml(path: str) -> dict[str, Any]:
    path = recipe_path(path)
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read config file {path}: {e}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of settings")
    return values
