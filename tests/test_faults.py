"""The fault suite (`make faults`): a killed or stopped run loses nothing and resumes exactly."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scenelab.checkpoint import load_checkpoint
from scenelab.tracking import read_rows

from conftest import wait_for_step_checkpoint

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
    wait_for_step_checkpoint(tmp_path, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    run = _run_folder(tmp_path)
    saved = load_checkpoint(run / "checkpoints" / "last.pt")  # never half-written
    assert saved["epoch"] == 0 and saved["position"] > 0
    resume = [
        sys.executable,
        *"-m scenelab train --resume".split(),
        str(run / "checkpoints" / "last.pt"),
    ]
    done = subprocess.run(resume, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"epoch 1 from batch {saved['position'] + 1}" in done.stdout
    _assert_same_run(reference, run)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_saves_after_the_step_and_says_how_to_resume(reference, tmp_path, signum):
    process = _start(tmp_path, "--checkpoint-every", "5")
    wait_for_step_checkpoint(tmp_path, process)
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
    done = subprocess.run(
        [sys.executable, "-m", "scenelab", *resume], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    _assert_same_run(reference, run)


def _corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])  # a truncated JPEG


def test_unreadable_images_stop_the_run_or_are_skipped_and_listed(
    tiny_miniplaces, tmp_path, capsys
):
    from scenelab.cli import main

    bad = [
        tiny_miniplaces / "images" / p
        for p in ("train/f/forest/00000002.jpg", "train/c/coast/00000001.jpg", "val/00000003.jpg")
    ]
    for path in bad:
        _corrupt(path)
    data = ["--data", "miniplaces", "--data-root", str(tiny_miniplaces)]
    flags = ["train", *data, *"--image-size 32 --batch-size 4 --epochs 2 --workers 0".split()]
    out = tmp_path / "runs"
    assert main([*flags, "--out-dir", str(out / "error")]) == 2
    err = capsys.readouterr().err
    assert "cannot decode image" in err and "--on-bad-image skip" in err
    skip = ["--on-bad-image", "skip", "--workers", "2", "--out-dir", str(out / "skip")]
    assert main([*flags, *skip]) == 0
    (run,) = (out / "skip").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["bad_images"] == {"count": 3, "files": sorted(str(p) for p in bad)}
    assert "warning: skipped 3 unreadable images" in capsys.readouterr().err
    rows = read_rows(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["train_loss"] > 0 for r in rows)


def test_a_batch_of_only_unreadable_images_is_a_clear_error():
    from scenelab.data.decode import DatasetError, collate_present

    with pytest.raises(DatasetError, match="none of the 4 images of a batch could be read"):
        collate_present([None] * 4)
    x, y = collate_present([None, (torch.ones(2), 1), (torch.zeros(2), 0)])
    assert x.shape == (2, 2) and y.tolist() == [1, 0]


def test_a_run_that_fails_to_start_leaves_no_folder_behind(tmp_path, capsys):
    from scenelab.cli import main

    out = tmp_path / "runs"
    nowhere = ["--data", "miniplaces", "--data-root", str(tmp_path / "nowhere")]
    assert main(["train", *nowhere, "--out-dir", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())


class _SmallMemory(torch.nn.Module):
    """A linear classifier that runs out of memory on batches of more than `limit` images."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.calls = limit, []
        self.head = torch.nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        self.calls.append(len(x))
        if len(x) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.head(x.flatten(1))


@pytest.mark.parametrize("tta", [False, True])
def test_evaluation_out_of_memory_retries_in_smaller_batches(tta):
    from torch.utils.data import DataLoader, TensorDataset

    from scenelab.evaluation import evaluate

    data = TensorDataset(torch.rand(22, 3, 4, 4), torch.randint(0, 5, (22,)))
    loader = DataLoader(data, batch_size=11)
    small = _SmallMemory(limit=3)
    roomy = _SmallMemory(limit=100)
    roomy.load_state_dict(small.state_dict())
    cpu = torch.device("cpu")
    got = evaluate(small, loader, device=cpu, tta=tta, num_classes=5)
    want = evaluate(roomy, loader, device=cpu, tta=tta, num_classes=5)
    assert torch.equal(got.pop("confusion"), want.pop("confusion"))
    assert got == pytest.approx(want)
    assert max(n for n in small.calls if n <= 3) == 3  # 11 -> 6 + 5 -> 3 + 3 + 3 + 2
    with pytest.raises(torch.OutOfMemoryError):  # not even one image fits: the error stands
        evaluate(_SmallMemory(limit=0), loader, device=cpu)
