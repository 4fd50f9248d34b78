import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scenelab.attack import (
    course_units,
    fgsm,
    input_std,
    least_likely_target,
    pgd,
    random_target,
)
from scenelab.config import ModelConfig
from scenelab.evaluation import evaluate
from scenelab.models import Normalize, SimpleNet, build_model
from scenelab.modes import eval_mode

EPS, ALPHA = 8 / 255, 2 / 255


@pytest.fixture
def torchattacks():
    """The reference library: only the tests that compare against it skip without it."""
    return pytest.importorskip("torchattacks")


@pytest.fixture
def cnn():
    """A small SimpleNet (in-place ReLUs) in float64, so comparisons with torchattacks are tight."""
    return SimpleNet(num_classes=5).double().eval()


@pytest.fixture
def images():
    return torch.rand(4, 3, 32, 32, dtype=torch.float64)


@pytest.fixture
def labels():
    return torch.tensor([0, 1, 2, 3])


def _toy_model() -> nn.Module:
    """Trained in a second: class 1 when the red channel is brighter than the blue one."""
    torch.manual_seed(0)
    model = nn.Sequential(Normalize(), nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(100):
        x = torch.rand(64, 3, 8, 8)
        y = (x[:, 0].mean((1, 2)) > x[:, 2].mean((1, 2))).long()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_stays_in_the_eps_ball_and_in_pixel_range(cnn, images, labels, norm, targeted):
    eps = EPS if norm == "linf" else 0.5
    target = least_likely_target(cnn(images), labels) if targeted else None
    x_adv = pgd(cnn, images, labels, eps=eps, alpha=eps / 4, steps=5, norm=norm, target=target)
    delta = (x_adv - images).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-6).all() and (size > 0).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    x_fgsm = fgsm(cnn, images, labels, eps=eps, norm=norm, target=target)
    delta = (x_fgsm - images).flatten(1)
    assert ((delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)) <= eps + 1e-6).all()


def _theirs(attack, targeted: bool):
    if targeted:
        attack.set_mode_targeted_by_label(quiet=True)
    return attack


@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_and_fgsm_equal_torchattacks_without_random_start(
    cnn, images, labels, targeted, torchattacks
):
    target = least_likely_target(cnn(images), labels) if targeted else None
    wanted = target if targeted else labels
    ta = torchattacks
    cases = [
        (
            dict(norm="linf", eps=EPS, alpha=ALPHA, steps=10),
            ta.PGD(cnn, eps=EPS, alpha=ALPHA, steps=10, random_start=False),
        ),
        (
            dict(norm="l2", eps=0.5, alpha=0.1, steps=10),
            ta.PGDL2(cnn, eps=0.5, alpha=0.1, steps=10, random_start=False),
        ),
    ]
    for kwargs, attack in cases:
        ours = pgd(cnn, images, labels, target=target, random_start=False, **kwargs)
        theirs = _theirs(attack, targeted)(images, wanted)
        torch.testing.assert_close(ours, theirs)
    ours = fgsm(cnn, images, labels, eps=EPS, target=target)
    theirs = _theirs(ta.FGSM(cnn, eps=EPS), targeted)(images, wanted)
    torch.testing.assert_close(ours, theirs)


def test_least_likely_targets_match_torchattacks_and_are_never_the_true_class(
    cnn, images, torchattacks
):
    logits = cnn(images)
    y = logits.argmin(1)  # the true class is the least likely: the case the exclusion is for
    target = least_likely_target(logits, y)
    assert (target != y).all()
    attack = torchattacks.PGD(cnn)
    attack.set_mode_targeted_least_likely(quiet=True)
    assert torch.equal(target, attack.get_least_likely_label(images, y))
    assert torch.equal(least_likely_target(logits), y)  # without labels: the plain argmin


def test_random_targets_are_never_the_true_class_and_cover_the_others():
    y = torch.zeros(2000, dtype=torch.long)
    target = random_target(y, 5, torch.Generator().manual_seed(0))
    assert (target != 0).all() and set(target.tolist()) == {1, 2, 3, 4}


def test_attacks_raise_the_loss_they_should_on_a_trained_model():
    model = _toy_model()
    x = torch.rand(256, 3, 8, 8)
    y = model(x).argmax(1)
    clean = F.cross_entropy(model(x), y)
    x_adv = pgd(model, x, y, eps=8 / 255, alpha=2 / 255, steps=10)
    assert F.cross_entropy(model(x_adv), y) > clean + 1
    assert (model(x_adv).argmax(1) == y).float().mean() < 0.5
    target = 1 - y
    x_adv = pgd(model, x, y, eps=8 / 255, alpha=2 / 255, steps=10, target=target)
    assert F.cross_entropy(model(x_adv), target) < F.cross_entropy(model(x), target) - 1
    x_fgsm = fgsm(model, x, y, eps=8 / 255)
    assert F.cross_entropy(model(x_fgsm), y) > clean


def test_restarts_keep_the_strongest_example_per_image(cnn, images, labels):
    torch.manual_seed(1)
    once = pgd(cnn, images, labels, eps=EPS, alpha=ALPHA, steps=2)
    torch.manual_seed(1)  # the first restart is the single run
    best = pgd(cnn, images, labels, eps=EPS, alpha=ALPHA, steps=2, restarts=4)
    with torch.no_grad():
        loss_once = F.cross_entropy(cnn(once), labels, reduction="none")
        loss_best = F.cross_entropy(cnn(best), labels, reduction="none")
    assert (loss_best >= loss_once).all() and (loss_best > loss_once).any()


def test_the_model_its_modes_batchnorm_buffers_and_grads_are_untouched(images, labels):
    model = build_model(ModelConfig(model="resnet_bn"), 5).double().train()
    model.head.eval()  # a submodule in its own mode must keep it
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    pgd(model, images, labels, eps=EPS, alpha=ALPHA, steps=2)
    assert model.training and not model.head.training
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())


def test_normalised_inputs_are_refused_with_the_reason(cnn, labels):
    x = (torch.rand(4, 3, 32, 32, dtype=torch.float64) - 0.45) / 0.225
    with pytest.raises(ValueError, match="pass images before normalisation"):
        pgd(cnn, x, labels)


def test_course_attack_in_pixels_equals_the_template_in_normalised_units(cnn, images):
    """The course's loop: normalised images, least-likely target from the clean logits,
    signed steps of 0.01, projection onto the 0.1 ball only (no clamp), no random start."""
    norm = cnn.normalize

    def body(t):  # SimpleNet after its normalisation layer
        return cnn.head(cnn.pool(cnn.features(t)).flatten(1))

    with torch.no_grad():
        target = body(norm(images)).argmin(1)
    x_n = norm(images)
    out = x_n.clone()
    for _ in range(10):
        out.requires_grad_(True)
        loss = F.cross_entropy(body(out), target)
        (grad,) = torch.autograd.grad(loss, out)
        out = out.detach() - 0.01 * grad.sign()
        out = torch.min(torch.max(out, x_n - 0.1), x_n + 0.1)
    expected = out * norm.std + norm.mean  # back to pixels
    eps, alpha = course_units(0.1, cnn), course_units(0.01, cnn)
    assert torch.allclose(eps.flatten(), 0.1 * torch.tensor([0.229, 0.224, 0.225]).double())
    ours = pgd(
        cnn,
        images,
        target,
        eps=eps,
        alpha=alpha,
        steps=10,
        target=target,
        random_start=False,
        clamp=False,
    )
    torch.testing.assert_close(ours, expected)


def test_input_std_is_one_without_a_normalisation_layer():
    assert torch.equal(input_std(nn.Linear(3, 2)), torch.ones(3, 1, 1))


def _mixed_modes() -> nn.Sequential:
    """A training model with one submodule in eval mode of its own."""
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Dropout(0.5)).train()
    model[1].eval()
    return model


def _modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def test_eval_mode_gives_every_submodule_its_own_mode_back_even_on_errors():
    model = _mixed_modes()
    before = _modes(model)
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        assert not any(_modes(model))
        raise RuntimeError("boom")
    assert _modes(model) == before


class _Exploding(nn.Module):
    """Records the modes its model is evaluated in, then fails on the `fail_at`-th batch."""

    def __init__(self, model: nn.Module, fail_at: int | None) -> None:
        super().__init__()
        self.model, self.fail_at, self.seen = model, fail_at, []

    def forward(self, x):
        self.seen.append(_modes(self))
        if len(self.seen) == self.fail_at:
            raise RuntimeError("forward failed")
        return self.model(x)


@pytest.mark.parametrize("fail_at", [None, 2])
def test_evaluate_restores_each_submodules_mode_even_when_the_forward_raises(fail_at):
    model = _Exploding(_mixed_modes(), fail_at)
    before = _modes(model)
    loader = [(torch.rand(4, 4), torch.randint(0, 3, (4,))) for _ in range(3)]
    if fail_at is None:
        evaluate(model, loader, device=torch.device("cpu"))
    else:
        with pytest.raises(RuntimeError, match="forward failed"):
            evaluate(model, loader, device=torch.device("cpu"))
    assert model.seen and not any(any(seen) for seen in model.seen)  # all in eval mode
    assert _modes(model) == before


@pytest.mark.parametrize(
    "change, says",
    [
        ({"eps": -0.1}, "eps must be a finite number >= 0, got -0.1"),
        ({"eps": float("nan")}, "eps must be a finite number >= 0, got nan"),
        ({"alpha": float("inf")}, "alpha must be a finite number >= 0"),
        ({"steps": 0}, "steps (0) and restarts (1) must be at least 1"),
        ({"x": torch.full((2, 3, 32, 32), float("nan"))}, "NaN or infinite values"),
        ({"x": torch.rand(0, 3, 32, 32), "y": torch.zeros(0, dtype=torch.long)}, "empty batch"),
    ],
    ids=["negative-eps", "nan-eps", "inf-alpha", "no-steps", "nan-images", "empty-batch"],
)
def test_the_python_api_refuses_what_would_attack_nothing(cnn, images, labels, change, says):
    inputs = {"x": images, "y": labels} | {k: v for k, v in change.items() if k in ("x", "y")}
    settings = {k: v for k, v in change.items() if k not in ("x", "y")}
    with pytest.raises(ValueError) as error:
        pgd(cnn, inputs["x"], inputs["y"], **settings)
    assert says in str(error.value)
