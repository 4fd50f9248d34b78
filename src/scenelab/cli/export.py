"""`scenelab export`: a trained model as TorchScript, ONNX or a torch.export program."""

import argparse
from pathlib import Path

from ..checkpoint import load_checkpoint, trained_model
from ..export import export_model
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
