"""The command surface: every `scenelab` command, its flags and help, in argparse only.

This module imports nothing heavy (no torch), so `scenelab --help` and any command's `--help`
answer at once; each command's module (`cli/train.py`, `cli/predict.py`, ...) is imported only
when that command runs. Flags of the config sections are generated from their dataclasses
(`flags.add_config_flags`).
"""

import argparse
import importlib
from collections.abc import Callable

from ..analysis_config import AttackConfig, ExplainConfig
from ..bench.config import (
    AttackBenchConfig,
    ConvBenchConfig,
    DataBenchConfig,
    ExplainBenchConfig,
    ModelsBenchConfig,
    TrainBenchConfig,
)
from ..config import MAX_IMAGE_SIZE, SECTIONS, TTA_MEANS, DataConfig
from .flags import (
    add_checkpoint_flag,
    add_checkpoint_flags,
    add_config_flags,
    add_device_flag,
    checkpoint_path,
    resume_path,
    whole,
)

EXPORT_FORMATS = ("exported-program", "torchscript", "onnx")  # the keys of export.FORMATS

# DataConfig fields that only training reads: eval, explain and attack do not list them
TRAINING_DATA = ("augment", "batch_augment", "cache_images", "synth_train")


def _command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """The function `name` of `scenelab.cli.<module>`, imported when the command runs."""

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(args)

    return run


def _tta_flags(p: argparse.ArgumentParser, default_note: str) -> None:
    p.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    p.add_argument(
        "--tta-mean",
        default="logits",
        choices=TTA_MEANS,
        help=f"flip TTA averages the logits ({default_note}) or the softmax probabilities",
    )


def _train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model; writes a run folder")
    p.add_argument(
        "-c", "--config", help="YAML recipe; flags given on the command line override it"
    )
    p.add_argument(
        "--resume",
        type=resume_path,
        help="continue a run: its folder (its last.pt) or a checkpoint",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration as YAML (usable as --config) and exit",
    )
    add_config_flags(p, *SECTIONS.values())
    p.set_defaults(func=_command("train", "cmd_train"))

    p = sub.add_parser("eval", help="evaluate a checkpoint: top-1/5, per-class, confusion")
    add_checkpoint_flags(p, "eval")
    p.add_argument("--split", default="val", help="split to evaluate (default: val)")
    p.add_argument(
        "--model",
        help="the model of a file that holds weights alone (torch.save(model.state_dict())): "
        "a name from `scenelab models`, tv:NAME or package.module:Class; give its data flags too",
    )
    _tta_flags(p, "the course template's")
    add_config_flags(p, DataConfig, skip=TRAINING_DATA)
    p.set_defaults(func=_command("evaluate", "cmd_eval"))


def _predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="top-k classes of your own images, with probabilities")
    p.add_argument("images", nargs="+", help="image files, folders (searched recursively), globs")
    add_checkpoint_flag(p)
    p.add_argument("--topk", type=whole(1), default=5, help="classes shown per image (default: 5)")
    _tta_flags(p, "default")
    p.add_argument(
        "-b", "--batch-size", type=whole(1), default=64, help="images per batch (default: 64)"
    )
    p.add_argument(
        "-j", "--workers", type=whole(0), default=2, help="image-decoding processes (default: 2)"
    )
    p.add_argument("--out", help="also write the predictions to FILE.csv or FILE.json")
    add_device_flag(p)
    p.set_defaults(func=_command("predict", "cmd_predict"))

    p = sub.add_parser(
        "export", help="the model as TorchScript, ONNX or torch.export, for deploying"
    )
    add_checkpoint_flag(p)
    p.add_argument(
        "--format",
        default="exported-program",
        choices=EXPORT_FORMATS,
        help="exported-program (torch.export; default), torchscript (torch.jit.script) or onnx "
        "(needs the export extra)",
    )
    p.add_argument("--out", help="output folder (default: <run>/export/)")
    p.set_defaults(func=_command("export", "cmd_export"))


def _models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models: parameters, FLOPs, default optimiser")
    p.add_argument(
        "--image-size",
        type=whole(16, MAX_IMAGE_SIZE),
        default=128,
        help="input size (default: 128)",
    )
    p.add_argument("--num-classes", type=whole(1), default=100, help="head classes (default: 100)")
    p.add_argument("--torchvision", action="store_true", help="list the tv:NAME models too")
    p.add_argument(
        "--show",
        metavar="NAME",
        help="one model's layers: type, output shape at --image-size and parameters",
    )
    p.add_argument(
        "--conv", default="native", help="--show: the CNNs' convolution (default: native)"
    )
    p.set_defaults(func=_command("models", "cmd_models"))

    p = sub.add_parser("recipes", help="list the bundled YAML recipes")
    p.set_defaults(func=_command("recipes", "cmd_recipes"))


def _analysis(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="saliency maps and overlays; --score for their quality")
    add_checkpoint_flags(p, "explain")
    p.add_argument(
        "--images",
        nargs="+",
        help="image files, folders (searched recursively) or globs to explain instead of val "
        "images",
    )
    p.add_argument("--score", action="store_true", help="score every method against masks")
    add_config_flags(p, ExplainConfig)
    add_config_flags(p, DataConfig, skip=TRAINING_DATA)
    p.set_defaults(func=_command("explain", "cmd_explain"))

    p = sub.add_parser("attack", help="adversarial examples and robust accuracy; --eps-sweep")
    add_checkpoint_flags(p, "attack")
    p.add_argument("-c", "--config", help="YAML recipe of attack settings; flags override it")
    p.add_argument(
        "--compare-checkpoint",
        nargs="+",
        metavar="PATH",
        type=checkpoint_path,
        help="attack other models (checkpoints or run folders) on the same images, side by side",
    )
    add_config_flags(p, AttackConfig)
    add_config_flags(p, DataConfig, skip=TRAINING_DATA)
    p.set_defaults(func=_command("attack", "cmd_attack"))


def _results(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list run folders: model, data, epochs, best top-1, date")
    p.add_argument("dir", nargs="?", default="runs", help="folder of run folders (default: runs)")
    p.set_defaults(func=_command("results", "cmd_runs"))

    p = sub.add_parser("report", help="(re)build report.html and report.md in run folders")
    p.add_argument("runs", nargs="+", help="run folders (runs/<time>-<name>)")
    p.set_defaults(func=_command("results", "cmd_report"))

    p = sub.add_parser("compare", help="results table, the reports' numbers and curves across runs")
    p.add_argument("runs", nargs="+", help="run folders (runs/<time>-<name>)")
    p.add_argument(
        "--out", help="where the new compare-<time>/ folder goes (default: beside the first run)"
    )
    p.add_argument("--at-epoch", type=whole(1), help="read every run at this epoch")
    p.set_defaults(func=_command("results", "cmd_compare"))


def _data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="action", required=True)
    p = data.add_parser("synth", help="write the synthetic scenes in the MiniPlaces layout")
    p.add_argument("--out", required=True, help="output root")
    p.add_argument("--train", type=whole(1), default=1000, help="training images (default: 1000)")
    p.add_argument("--val", type=whole(1), default=200, help="validation images (default: 200)")
    p.add_argument(
        "--size",
        type=whole(16, MAX_IMAGE_SIZE),
        default=128,
        help="image size in pixels (default: 128)",
    )
    p.add_argument("--classes", type=whole(1, 10), default=10, help="number of classes, at most 10")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    p.set_defaults(func=_command("data", "cmd_data_synth"))
    p = data.add_parser("show", help="a grid of sample images with their class names")
    p.add_argument("--split", default="train", help="split to draw from (default: train)")
    p.add_argument("--num", type=whole(1), default=16, help="images in the grid (default: 16)")
    p.add_argument("--seed", type=int, default=0, help="which images (default: 0)")
    p.add_argument(
        "--augmented", action="store_true", help="show them with the training augmentation"
    )
    p.add_argument("--out", default="samples.png", help="the picture (default: samples.png)")
    add_config_flags(p, DataConfig)
    p.set_defaults(func=_command("data", "cmd_data_show"))
    p = data.add_parser("download", help="download MiniPlaces (images and list files)")
    p.add_argument("dataset", choices=["miniplaces"], help="the dataset")
    p.add_argument("--root", required=True, help="where to install it")
    p.add_argument("--mirror", help="fetch the same file names from this base URL instead")
    p.add_argument("--sha256", nargs="+", metavar="NAME=HEX", help="pin a file's SHA-256")
    p.set_defaults(func=_command("data", "cmd_data_download"))


BENCHES = (
    ("conv", "nn.Conv2d vs the hand-written UnfoldConv2d and the course's layer", ConvBenchConfig),
    ("models", "training step time and memory of every model", ModelsBenchConfig),
    ("explain", "saliency methods against captum's", ExplainBenchConfig),
    ("data", "input pipeline throughput against the model's", DataBenchConfig),
    ("train", "the training loop's speed switches against plain", TrainBenchConfig),
    ("attack", "PGD and FGSM against torchattacks'", AttackBenchConfig),
)


def _bench(sub: argparse._SubParsersAction) -> None:
    benches = sub.add_parser("bench", help="benchmarks: times, memory and ratios in one run")
    benches = benches.add_subparsers(dest="bench", required=True)
    for name, help_text, config in BENCHES:
        p = benches.add_parser(name, help=help_text)
        add_config_flags(p, config)
        p.set_defaults(func=_command("bench", f"cmd_bench_{name}"))


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Every command, in the order `scenelab --help` lists them."""
    for add in (_train, _predict, _models, _analysis, _results, _data, _bench):
        add(sub)
