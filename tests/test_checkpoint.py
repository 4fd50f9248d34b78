import errno

import pytest
import torch

from scenelab.checkpoint import CheckpointError, load_checkpoint, load_model_state, save_checkpoint
from scenelab.models import SimpleNet


def _state(model, name="simplenet"):
    return {
        "model": model.state_dict(),
        "config": {"model": {"model": name}},
        "epoch": 3,
        "classes": ["a", "b", "c"],
        "model_name": name,
        "best_acc1": 50.0,
    }


def test_round_trip_with_weights_only_loading(tmp_path):
    model = SimpleNet(num_classes=3)
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, _state(model))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and state["classes"] == ["a", "b", "c"]
    other = SimpleNet(num_classes=3)
    load_model_state(other, state, "simplenet", path)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True)
    )


@pytest.mark.faults
def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(SimpleNet(num_classes=3)))
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(CheckpointError, match="disk full"):
        save_checkpoint(path, _state(SimpleNet(num_classes=3)))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.faults
def test_missing_garbage_truncated_and_foreign_files_each_get_a_message(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    save_checkpoint(tmp_path / "full.pt", _state(SimpleNet(num_classes=3)))
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": torch.ones(2), "step": 3}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a scenelab checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    torch.save(SimpleNet(num_classes=3).state_dict(), tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match="weights alone .* --model NAME"):
        load_checkpoint(tmp_path / "weights.pt")
    assert load_checkpoint(tmp_path / "weights.pt", weights_alone=True)["weights"].keys() == (
        SimpleNet(num_classes=3).state_dict().keys()
    )


class Payload:
    pass


@pytest.mark.faults
def test_pickled_objects_are_refused(tmp_path):
    state = _state(SimpleNet(num_classes=3)) | {"extra": Payload()}
    torch.save(state, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refuses to load it"):
        load_checkpoint(tmp_path / "evil.pt")


@pytest.mark.faults
def test_a_checkpoint_of_another_model_or_class_count_names_both(tmp_path):
    state = _state(SimpleNet(num_classes=3))
    with pytest.raises(CheckpointError, match="holds a 'simplenet' model, not 'vit'"):
        load_model_state(SimpleNet(num_classes=3), state, "vit", "x.pt")
    with pytest.raises(CheckpointError, match=r"\(simplenet, 3 classes\) does not fit .*head"):
        load_model_state(SimpleNet(num_classes=5), state, "simplenet", "x.pt")


@pytest.mark.parametrize(
    "failure, says",
    [
        (
            RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 32"),
            "unexpected pos",
        ),
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device (ENOSPC)"),
    ],
    ids=["torch-writer", "oserror"],
)
def test_a_checkpoint_that_cannot_be_written_leaves_the_previous_one_and_no_partial_file(
    tmp_path, monkeypatch, failure, says
):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"step": 1})

    def disk_full(state, f):
        f.write(b"half a checkpoint")  # as a full disk does: part of it, then the error
        raise failure

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError) as error:
        save_checkpoint(path, {"step": 2})
    message = str(error.value)
    assert f"cannot write checkpoint {path}" in message and says in message
    assert "MB free on that disk" in message and "the previous one is unchanged" in message
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no .tmp left
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1
    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="no partial file was left"):
        save_checkpoint(tmp_path / "other" / "best.pt", {"step": 2})
    assert list((tmp_path / "other").iterdir()) == []
