"""Which checkpoint a path means, without importing torch (the CLI checks paths while parsing)."""

from pathlib import Path


def locate_checkpoint(path: str | Path) -> tuple[Path | None, str]:
    """(the checkpoint file, "") for a checkpoint file as given or a run folder's best.pt (else
    its last.pt); (None, why not) otherwise."""
    path = Path(path)
    if path.is_file():
        return path, ""
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name, ""
        return None, (
            f"{path} has no checkpoints/best.pt or last.pt; give a run folder that finished at "
            "least one epoch, or a checkpoint file"
        )
    return None, f"{path} not found; give a run folder or a checkpoint file"
