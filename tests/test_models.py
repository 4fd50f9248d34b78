import pytest
import torch
from torch import nn

from scenelab.config import ModelConfig
from scenelab.models import MODELS, Normalize, SimpleNet, build_model, count_parameters


def test_simplenet_has_the_course_parameter_count():
    assert count_parameters(SimpleNet(num_classes=100)) == 365_028


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("name", list(MODELS))
def test_registry_models_classify_64_and_128_pixel_images(name, size):
    model = build_model(ModelConfig(model=name), num_classes=7)
    out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(MODELS))
def test_every_parameter_receives_a_gradient(name):
    model = build_model(ModelConfig(model=name), num_classes=5)
    model(torch.rand(2, 3, 64, 64)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


@pytest.mark.parametrize("name", list(MODELS))
def test_unfold_conv_gives_the_native_model_output(name):
    native = build_model(ModelConfig(model=name), num_classes=5).double()
    unfold = build_model(ModelConfig(model=name, conv="unfold"), num_classes=5).double()
    unfold.load_state_dict(native.state_dict())
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    torch.testing.assert_close(unfold(x), native(x))


def test_conv_layer_is_injected_everywhere():
    class MarkedConv(nn.Conv2d):
        pass

    model = SimpleNet(num_classes=3, conv_layer=MarkedConv)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 7 and all(isinstance(m, MarkedConv) for m in convs)
    # Same parameters and state-dict keys as the default: weights load across.
    SimpleNet(num_classes=3).load_state_dict(model.state_dict())


def test_normalize_is_the_first_layer_with_persistent_statistics():
    model = SimpleNet(num_classes=3)
    assert {"normalize.mean", "normalize.std"} <= model.state_dict().keys()
    x = torch.rand(1, 3, 4, 4)
    expected = (x - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(3, 1, 1)
    assert torch.allclose(Normalize()(x), expected)


def test_unknown_model_or_conv_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'nope'; choose from simplenet"):
        build_model(ModelConfig(model="nope"), 3)
    with pytest.raises(ValueError, match="unknown conv 'nope'"):
        build_model(ModelConfig(conv="nope"), 3)
