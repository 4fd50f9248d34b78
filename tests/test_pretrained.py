import hashlib
import socket
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from scenelab.config import ModelConfig, OptimConfig
from scenelab.models import TorchvisionClassifier, WeightsError, build_model, load_pretrained
from scenelab.models.pretrained import download_state_dict
from scenelab.optim import build_optimizer


def _resnet18_state(seed=0):
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).state_dict()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache of this test's own."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over a folder; yields (folder, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _hashed_file(folder, state):
    """Save `state` as torch hub names its files: <name>-<first sha256 hex digits>.pth."""
    tmp = folder / "weights.pth"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    return tmp.rename(folder / f"resnet18-{digest}.pth")


def test_new_head_replaces_the_imagenet_classifier():
    model = TorchvisionClassifier("resnet18", 7)
    assert isinstance(model.backbone.fc, nn.Identity) and model.head_name == "fc"
    assert model.head.in_features == 512 and model.head.out_features == 7
    small = build_model(ModelConfig(model="tv:mobilenet_v3_small"), 4)
    assert small.head_name == "classifier.3" and small(torch.rand(2, 3, 64, 64)).shape == (2, 4)


def test_local_state_dict_loads_into_the_backbone(tmp_path):
    state = _resnet18_state()
    torch.save(state, tmp_path / "r18.pth")
    cfg = ModelConfig(model="resnet18", weights=str(tmp_path / "r18.pth"))
    model = build_model(cfg, 5)
    head = model.head.weight.clone()
    assert load_pretrained(model, cfg) == str(tmp_path / "r18.pth")
    for key in ("conv1.weight", "layer4.1.bn2.running_var"):
        assert torch.equal(model.backbone.state_dict()[key], state[key])
    assert torch.equal(model.head.weight, head)  # the new head keeps its own init


def test_weights_that_do_not_fit_or_are_no_state_dict_are_clear_errors(tmp_path):
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    torch.save(_resnet18_state() | {"conv1.weight": torch.zeros(8, 3, 3, 3)}, tmp_path / "bad.pth")
    torch.save({"model": {}, "config": {}}, tmp_path / "ckpt.pt")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    for name, message in (
        ("r34.pth", "does not fit torchvision's resnet18: 0 missing keys .* unexpected"),
        ("bad.pth", r"does not fit resnet18: size mismatch for conv1.weight: .* torchvision"),
        ("ckpt.pt", "not a plain state dict of tensors"),
        ("junk.pth", "not a readable torch state dict"),
        ("absent.pth", "absent.pth not found"),
    ):
        cfg = ModelConfig(model="resnet18", weights=str(tmp_path / name))
        with pytest.raises(WeightsError, match=message):
            load_pretrained(build_model(cfg, 5), cfg)


def test_download_goes_through_the_hub_cache(hub, server):
    folder, url = server
    state = _resnet18_state()
    path = _hashed_file(folder, state)
    loaded = download_state_dict(f"{url}/{path.name}")
    assert torch.equal(loaded["conv1.weight"], state["conv1.weight"])
    assert (hub / path.name).is_file()
    path.unlink()  # the second time comes from the cache, not the server
    assert torch.equal(download_state_dict(f"{url}/{path.name}")["fc.bias"], state["fc.bias"])


def test_a_corrupted_download_fails_its_hash_check(hub, server):
    folder, url = server
    path = _hashed_file(folder, _resnet18_state())
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(WeightsError, match="not usable"):
        download_state_dict(f"{url}/{path.name}")


def test_offline_download_says_how_to_pass_weights(hub):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(WeightsError, match="could not download .* pass it with --weights PATH"):
        download_state_dict(f"http://127.0.0.1:{port}/resnet18-abcdef12.pth")


def test_pretrained_uses_torchvisions_imagenet_weights_from_the_cache(hub):
    hub.mkdir(parents=True)
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    state = _resnet18_state(seed=3)
    torch.save(state, hub / url.rsplit("/", 1)[1])  # as if downloaded before: no network used
    cfg = ModelConfig(model="resnet18", pretrained=True)
    model = build_model(cfg, 5)
    assert "ImageNet" in load_pretrained(model, cfg)
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])


def test_frozen_backbone_trains_only_the_head():
    model = build_model(ModelConfig(model="resnet18", freeze_backbone=True), 3).train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    optimizer = build_optimizer(model, OptimConfig(lr=0.1))
    model(torch.rand(4, 3, 64, 64)).sum().backward()
    optimizer.step()
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics


def test_unsupported_torchvision_names_are_clear_errors():
    with pytest.raises(ValueError, match="torchvision has no classification model 'nope'"):
        build_model(ModelConfig(model="tv:nope"), 3)
    with pytest.raises(ValueError, match="'googlenet'"):
        build_model(ModelConfig(model="tv:googlenet"), 3)
