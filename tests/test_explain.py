import pytest
import torch
import torch.nn.functional as F

from scenelab.analysis_config import ExplainConfig
from scenelab.config import ModelConfig
from scenelab.explain import (
    attention_rollout,
    compute_maps,
    default_cam_layer,
    grad_cam,
    integrated_gradients,
    method_label,
    predict,
    saliency,
    smoothgrad,
)
from scenelab.explain_score import applicable_methods
from scenelab.metrics import mask_energy, pointing_game, rank_correlation
from scenelab.models import MODELS, SimpleNet, VisionTransformer, build_model
from scenelab.overlays import heat_overlay, red_overlay


@pytest.fixture
def captum_attr():
    """The reference library: only the tests that compare against it skip without it."""
    return pytest.importorskip("captum.attr")


@pytest.fixture
def cnn():
    """A small SimpleNet (in-place ReLUs) in float64, so captum comparisons are tight."""
    return SimpleNet(num_classes=5).double()


@pytest.fixture
def images():
    return torch.rand(3, 3, 32, 32, dtype=torch.float64)


def _vit():
    return VisionTransformer(
        5,
        img_size=32,
        patch_size=8,
        embed_dim=16,
        num_heads=2,
        depth=2,
        window_size=2,
        window_block_indexes=(1,),
    ).double()


METHODS = {
    "saliency": saliency,
    "saliency-logit": lambda m, x, t=None: saliency(m, x, t, objective="logit"),
    "smoothgrad": lambda m, x, t=None: smoothgrad(m, x, t, samples=4),
    "integrated_gradients": lambda m, x, t=None: integrated_gradients(m, x, t, steps=8),
    "grad_cam": grad_cam,
}


def test_course_saliency_is_the_gradient_of_the_predicted_label_loss(cnn, images):
    maps = saliency(cnn, images)
    cnn.eval()
    for i in range(len(images)):
        x = images[i : i + 1].clone().requires_grad_(True)
        logits = cnn(x)
        loss = F.cross_entropy(logits, logits.argmax(1))
        (grad,) = torch.autograd.grad(loss, x)
        torch.testing.assert_close(maps[i], grad[0].abs().amax(0))


def test_logit_objective_equals_captum_saliency_and_differs_from_the_loss(cnn, images, captum_attr):
    target = predict(cnn, images)
    ours = saliency(cnn, images, objective="logit")
    theirs = captum_attr.Saliency(cnn.eval()).attribute(images, target=target).amax(1)
    torch.testing.assert_close(ours, theirs)
    assert not torch.allclose(ours, saliency(cnn, images))


def test_channel_reductions(cnn, images, captum_attr):
    target = predict(cnn, images)
    grad = captum_attr.Saliency(cnn.eval()).attribute(images, target=target, abs=False)
    torch.testing.assert_close(
        saliency(cnn, images, objective="logit", reduce="sum"), grad.abs().sum(1)
    )
    torch.testing.assert_close(
        saliency(cnn, images, objective="logit", reduce="l2"), grad.norm(dim=1)
    )


def test_smoothgrad_equals_captum_noise_tunnel_with_the_same_noise(cnn, images, captum_attr):
    # float32: captum draws its noise in float32 whatever the input's dtype.
    cnn, images = cnn.float(), images.float()
    target = predict(cnn, images)
    torch.manual_seed(7)
    ours = smoothgrad(cnn, images, objective="logit", samples=5, stdev=0.2, batch_size=3)
    torch.manual_seed(7)
    tunnel = captum_attr.NoiseTunnel(captum_attr.Saliency(cnn.eval()))
    theirs = tunnel.attribute(
        images, nt_type="smoothgrad", nt_samples=5, stdevs=0.2, target=target
    ).amax(1)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)  # in chunks of 3 images


def test_integrated_gradients_equals_captum(cnn, images, captum_attr):
    target = predict(cnn, images)
    baseline = torch.full_like(images, 0.5)
    ours = integrated_gradients(cnn, images, steps=12, baseline=baseline, batch_size=8)
    ig = captum_attr.IntegratedGradients(cnn.eval())
    theirs = ig.attribute(images, baselines=baseline, target=target, n_steps=12)
    torch.testing.assert_close(ours, theirs.abs().amax(1))


@pytest.mark.parametrize("name", ["simplenet", "resnet_bn"])
def test_grad_cam_equals_captum_layer_grad_cam(name, captum_attr):
    model = build_model(ModelConfig(model=name), 5).double().eval()
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    layer = default_cam_layer(model, x)
    assert layer == {"simplenet": "features", "resnet_bn": "final"}[name]
    target = predict(model, x)
    cam = captum_attr.LayerGradCam(model, model.get_submodule(layer))
    theirs = cam.attribute(x, target=target, relu_attributions=True)
    theirs = captum_attr.LayerAttribution.interpolate(theirs, (64, 64), "bilinear").squeeze(1)
    torch.testing.assert_close(grad_cam(model, x), theirs)


@pytest.mark.parametrize("method", list(METHODS))
def test_maps_are_non_negative_per_pixel_and_leave_the_model_as_it_was(cnn, images, method):
    cnn.train()
    for p in cnn.parameters():
        p.grad = torch.ones_like(p)
    maps = METHODS[method](cnn, images)
    assert maps.shape == (3, 32, 32) and torch.isfinite(maps).all() and (maps >= 0).all()
    assert cnn.training  # mode restored
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in cnn.parameters())


@pytest.mark.parametrize("method", [m for m in METHODS if m != "smoothgrad"])
def test_an_images_map_does_not_depend_on_the_rest_of_the_batch(cnn, images, method):
    together = METHODS[method](cnn, images)
    alone = METHODS[method](cnn, images[1:2])
    torch.testing.assert_close(alone[0], together[1])


def test_explicit_targets_are_used(cnn, images, captum_attr):
    target = torch.tensor([0, 1, 2])
    ours = saliency(cnn, images, target, objective="logit")
    theirs = captum_attr.Saliency(cnn.eval()).attribute(images, target=target).amax(1)
    torch.testing.assert_close(ours, theirs)


def test_normalised_images_are_refused(cnn):
    with pytest.raises(ValueError, match=r"images must be pixels in \[0, 1\]"):
        saliency(cnn, torch.randn(2, 3, 32, 32, dtype=torch.float64))


def test_methods_refuse_the_wrong_family(cnn, images):
    with pytest.raises(ValueError, match="for ViTs use attention_rollout"):
        grad_cam(_vit(), images)
    with pytest.raises(ValueError, match="for CNNs use grad_cam"):
        attention_rollout(cnn, images)


def test_attention_rollout_known_answer_for_one_block():
    vit = VisionTransformer(
        5, img_size=16, patch_size=8, embed_dim=8, num_heads=2, depth=1, window_block_indexes=()
    ).double()
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    (attn,) = vit.attention_maps(x)  # (2, 2, 4, 4)
    a = 0.5 * attn.mean(1) + 0.5 * torch.eye(4, dtype=torch.float64)
    expected = (a / a.sum(-1, keepdim=True)).mean(1).view(2, 1, 2, 2)  # token grid 2 x 2
    expected = F.interpolate(expected, size=(16, 16), mode="bilinear").squeeze(1)
    torch.testing.assert_close(attention_rollout(vit, x), expected)


def test_attention_rollout_covers_vit_and_msvit():
    for name in ("vit", "msvit"):
        model = build_model(ModelConfig(model=name), 5, 64).train()
        maps = attention_rollout(model, torch.rand(2, 3, 64, 64))
        assert maps.shape == (2, 64, 64) and (maps > 0).all() and model.training


def test_red_overlay_marks_pixels_above_alpha_times_the_mean():
    images = torch.zeros(2, 3, 2, 2)
    maps = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[4.0, 4.0], [4.0, 5.0]]])
    # Over both maps the mean is 2.25: only the second image's pixels exceed 4.5.
    out = red_overlay(images, maps)
    assert out[0].sum() == 0 and out[1, 0, 1, 1] == 1 and out[1, :, 0, 0].sum() == 0
    # Per image: image 0's mean is 0.25, so its 1.0 pixel turns red; image 1 has none above 9.
    out = red_overlay(images, maps, per_image=True)
    assert out[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0] and out[1].sum() == 0


def test_heat_overlay_blends_a_colour_map():
    images = torch.ones(1, 3, 4, 4)
    out = heat_overlay(images, torch.rand(1, 4, 4), opacity=0.5)
    assert out.shape == images.shape and out.min() >= 0.5 and out.max() <= 1


def test_pointing_game_mask_energy_and_rank_correlation_known_answers():
    maps = torch.zeros(3, 4, 4)
    maps[0, 1, 1] = 3.0
    maps[0, 3, 3] = 1.0  # max at (1, 1), inside the mask
    maps[1, 3, 3] = 1.0  # max at (3, 3), outside
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[:2, :2, :2] = True  # image 2 has no object pixels
    assert pointing_game(maps, masks)[:2].tolist() == [1.0, 0.0]
    assert torch.isnan(pointing_game(maps, masks)[2])
    energy = mask_energy(maps, masks)
    assert energy[:2].tolist() == [0.75, 0.0] and torch.isnan(energy[2])
    a = torch.rand(2, 5, 5)
    torch.testing.assert_close(rank_correlation(a, a), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(rank_correlation(a, -a), -torch.ones(2, dtype=torch.float64))


def test_method_label_records_the_settings_that_change_the_pictures():
    assert method_label(ExplainConfig()) == "saliency-loss-max"
    cfg = ExplainConfig(method="smoothgrad", samples=4, stdev=0.2, threshold=3, per_image=True)
    assert method_label(cfg) == "smoothgrad-loss-max-n4-s0.2-t3-per-image"
    assert (
        method_label(ExplainConfig(method="grad_cam", layer="features.3")) == "grad_cam-features.3"
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_gets_a_map_from_each_method_that_applies(name):
    model = build_model(ModelConfig(model=name), 5, 32).eval()
    x = torch.rand(2, 3, 32, 32)
    for method in applicable_methods(model):
        maps = compute_maps(model, x, ExplainConfig(method=method, samples=2, steps=2))
        assert maps.shape == (2, 32, 32) and torch.isfinite(maps).all() and (maps >= 0).all()
        assert maps.flatten(1).amax(1).gt(0).all(), method  # not blank
