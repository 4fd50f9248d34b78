"""Shared fixtures: seeding, the test device, tiny datasets on disk and tiny training flags."""

import os
import subprocess
import time
from pathlib import Path

import pytest
import torch

from scenelab.checkpoint import load_checkpoint
from scenelab.data.miniplaces import write_miniplaces
from scenelab.data.synthetic import CLASSES, iter_scenes

SAMPLE = Path(
    os.environ.get(
        "SCENELAB_MINIPLACES_SAMPLE",
        Path(__file__).resolve().parents[2] / "shared" / "datasets" / "miniplaces-sample",
    )
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def device() -> torch.device:
    return torch.device(os.environ.get("TEST_DEVICE", "cpu"))


def write_tiny(root: Path, num_classes: int = 3, train: int = 12, val: int = 6, size: int = 32):
    classes = list(CLASSES[:num_classes])
    write_miniplaces(root, classes, "train", iter_scenes(train, size, num_classes, 0, "train"))
    write_miniplaces(root, classes, "val", iter_scenes(val, size, num_classes, 0, "val"))
    return root


@pytest.fixture
def tiny_miniplaces(tmp_path: Path) -> Path:
    """A 3-class MiniPlaces-layout tree of 32x32 JPEGs with masks: 12 train, 6 val images."""
    return write_tiny(tmp_path / "tiny")


# Flags for a training run of a few seconds.
TINY_TRAIN = [
    "--synth-train",
    "48",
    "--synth-val",
    "24",
    "--synth-classes",
    "3",
    "--image-size",
    "32",
    "--batch-size",
    "16",
    "--workers",
    "0",
    "--epochs",
    "2",
    "--log-every",
    "1",
]


@pytest.fixture(scope="session")
def run(tmp_path_factory) -> Path:
    """The run folder of a tiny training run (3 synthetic classes, 32 px), shared by the
    tests of the commands that read a checkpoint; each writes into its own subfolder."""
    from scenelab.cli import main

    out = tmp_path_factory.mktemp("runs")
    assert main(["train", *TINY_TRAIN, "--out-dir", str(out)]) == 0
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "faults: the fault suite (make faults): kills, signals, corrupt files"
    )


def wait_for_step_checkpoint(out: Path, process: subprocess.Popen) -> None:
    """Until a run under `out` has saved last.pt part-way through its first epoch."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        last = list(out.glob("*/checkpoints/last.pt"))
        if last and load_checkpoint(last[0]).get("position", 0) > 0:
            return
        time.sleep(0.02)
    raise AssertionError(f"no step checkpoint appeared: {process.communicate(timeout=60)}")
