"""`scenelab export`: a trained model as TorchScript, ONNX or a torch.export program."""

import argparse
from pathlib import Path

from ..checkpoint import load_checkpoint, trained_model
from ..export import FORMATS, export_model
from ..inference import find_checkpoint


def cmd_export(args: argparse.Namespace) -> int:
    checkpoint = find_checkpoint(args.checkpoint)
    state = load_checkpoint(checkpoint)
    model, cfg = trained_model(state, checkpoint)
    out = Path(args.out) if args.out else checkpoint.resolve().parent.parent / "export"
    print(f"Exporting {checkpoint} ({cfg.model.model}) as {args.format} ...", flush=True)
    path = export_model(
        model,
        args.format,
        out,
        classes=list(state["classes"]),
        image_size=cfg.data.resolved_image_size,
        model_name=cfg.model.model,
    )
    print(f"\nExported: {path}  (with classes.json and preprocessing.json beside it)")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="the model as TorchScript, ONNX or torch.export, for deploying"
    )
    p.add_argument(
        "--checkpoint",
        "--run",
        required=True,
        help="a checkpoint file, or a run folder (its best.pt, else last.pt)",
    )
    p.add_argument(
        "--format",
        default="exported-program",
        choices=list(FORMATS),
        help="torchscript (torch.jit.script), onnx (needs the export extra) or exported-program "
        "(torch.export; default)",
    )
    p.add_argument("--out", help="output folder (default: <run>/export/)")
    p.set_defaults(func=cmd_export)
