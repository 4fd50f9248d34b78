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
from ..models.summary import layer_rows


def _optimiser(name: str) -> str:
    optim = OptimConfig(**optim_defaults(ModelConfig(model=name)))
    clip = f" clip {optim.clip_grad:g}" if optim.clip_grad else ""
    return f"{optim.optimizer} lr {optim.lr:g}{clip}"


def cmd_models(args: argparse.Namespace) -> int:
    if args.show:
        return _show(args)
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


def _show(args: argparse.Namespace) -> int:
    """`--show NAME`: the model's layers, their output shapes and parameters."""
    model = build_model(
        ModelConfig(model=args.show, conv=args.conv), args.num_classes, args.image_size
    )
    layers = layer_rows(model, args.image_size)
    rows = [
        [
            r.name,
            r.kind,
            " x ".join(map(str, r.output)),
            f"{r.params:,}" if r.params else "",
            r.detail,
        ]
        for r in layers
    ]
    print(
        f"{args.show} for {args.image_size} px images and {args.num_classes} classes: every "
        "layer in the order it runs, its output for one image (channels x height x width, or "
        "tokens x width) and its own parameters\n"
    )
    print(format_table(["layer", "type", "output", "params", "settings"], rows, left=(0, 1, 2, 4)))
    flops = count_flops(model, args.image_size) / 1e9
    print(f"\ntotal: {count_parameters(model):,} parameters, {flops:.3f} GFLOPs per image")
    return 0
