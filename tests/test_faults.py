"""The fault suite (`make faults`): a killed or stopped run loses nothing and resumes exactly."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scenelab.checkpoint import load_checkpoint
from scenelab.tracking import read_rows

pytestmark = pytest.mark.faults

# 600 images of 32 px in batches of 16: 38 steps an epoch, long enough to stop in the middle.
FLAGS = (
    "--synth-train 600 --synth-val 64 --synth-classes 4 --image-size 32 --batch-size 16 "
    "--epochs 2 --workers 0 --log-every 10"
).split()


def _start(out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "scenelab", "train", *FLAGS, "--out-dir", str(out), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def _run_folder(out: Path) -> Path:
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


def _wait_for_step_checkpoint(out: Path, process: subprocess.Popen) -> None:
    """Until last.pt exists part-way through the first epoch."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        last = list(out.glob("*/checkpoints/last.pt"))
        if last and load_checkpoint(last[0]).get("position", 0) > 0:
            return
        time.sleep(0.02)
    raise AssertionError(f"no step checkpoint appeared: {_finish(process)}")


def _assert_same_run(a: Path, b: Path) -> None:
    rows_a, rows_b = read_rows(a / "metrics.jsonl"), read_rows(b / "metrics.jsonl")
    assert [r["epoch"] for r in rows_b] == [1, 2]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key in ("train_loss", "train_acc1", "val_loss", "val_acc1", "lr"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-7), key
    wa = load_checkpoint(a / "checkpoints" / "last.pt")["model"]
    wb = load_checkpoint(b / "checkpoints" / "last.pt")["model"]
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-5), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same run, uninterrupted."""
    out = tmp_path_factory.mktemp("reference")
    code, _, err = _finish(_start(out))
    assert code == 0, err
    return _run_folder(out)


def test_kill_9_mid_epoch_then_resume_matches_the_uninterrupted_run(reference, tmp_path):
    process = _start(tmp_path, "--checkpoint-every", "1")
    _wait_for_step_checkpoint(tmp_path, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    run = _run_folder(tmp_path)
    saved = load_checkpoint(run / "checkpoints" / "last.pt")  # never half-written
    assert saved["epoch"] == 0 and saved["position"] > 0
    resume = [sys.executable, "-m", "scenelab", "train", "--resume",
              str(run / "checkpoints" / "last.pt")]  # fmt: skip
    done = subprocess.run(resume, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"epoch 1 from batch {saved['position'] + 1}" in done.stdout
    _assert_same_run(reference, run)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_saves_after_the_step_and_says_how_to_resume(reference, tmp_path, signum):
    process = _start(tmp_path, "--checkpoint-every", "5")
    _wait_for_step_checkpoint(tmp_path, process)
    process.send_signal(signum)
    code, _, err = _finish(process)
    run = _run_folder(tmp_path)
    assert code == 128 + signum
    assert f"{signal.Signals(signum).name}: stopping after this step" in err
    assert f"Resume with: scenelab train --resume {run / 'checkpoints' / 'last.pt'}" in err
    saved = load_checkpoint(run / "checkpoints" / "last.pt")
    assert saved["epoch"] == 0 and saved["position"] > 0  # saved where it stopped, mid-epoch
    assert (run / "report.html").is_file()  # the report of what was done so far
    resume = ["train", "--resume", str(run / "checkpoints" / "last.pt")]
    done = subprocess.run([sys.executable, "-m", "scenelab", *resume], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    _assert_same_run(reference, run)
