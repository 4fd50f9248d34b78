"""`scenelab models`: the registry with parameter counts, FLOPs and default optimisers."""

import argparse

from ..config import ModelConfig, OptimConfig
from ..document import format_table
from ..models import (
    MODELS,
    build_model,
    count_flops,
    count_parameters,
    optim_defaults,
)
from ..models.pretrained import torchvision_names


def _optimiser(name: str) -> str:
    optim = OptimConfig(**optim_defaults(ModelConfig(model=name)))
    clip = f" clip {optim.clip_grad:g}" if optim.clip_grad else ""
    return f"{optim.optimizer} lr {optim.lr:g}{clip}"


def cmd_models(args: argparse.Namespace) -> int:
    rows = []
    for name in MODELS:
        model = build_model(ModelConfig(model=name), args.num_classes, args.image_size)
        flops = count_flops(model, args.image_size)
        params, gflops = f"{count_parameters(model):,}", f"{flops / 1e9:.3f}"
        rows.append([name, params, gflops, _optimiser(name), MODELS[name].description])
    print(
        f"Models at {args.image_size} px with {args.num_classes} classes (FLOPs: forward pass "
        "of one image, 2 per multiply-add, counted by torch.utils.flop_counter)\n"
    )
    header = ["model", "params", "GFLOPs", "default optimiser", "description"]
    print(format_table(header, rows, left=(0, 3, 4)))
    names = torchvision_names()
    print(
        f"\nAlso tv:NAME for {len(names)} torchvision classification models"
        + (f": {', '.join(names)}" if args.torchvision else " (list them with --torchvision)")
        + ".\nTrain one with: scenelab train --model NAME (see scenelab train --help for the "
        "architecture flags)"
    )
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models: parameters, FLOPs, default optimiser")
    p.add_argument("--image-size", type=int, default=128, help="input size (default: 128)")
    p.add_argument("--num-classes", type=int, default=100, help="head classes (default: 100)")
    p.add_argument("--torchvision", action="store_true", help="list the tv:NAME models too")
    p.set_defaults(func=cmd_models)
