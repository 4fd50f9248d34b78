import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from scenelab.adversarial import CrossEntropy
from scenelab.config import OptimConfig, RunConfig
from scenelab.data import Loaders
from scenelab.data.synthetic import generate
from scenelab.evaluation import evaluate
from scenelab.models import SimpleNet
from scenelab.optim import build_optimizer, build_scheduler, lr_factor, param_groups
from scenelab.tracking import EpochLog, RunDir
from scenelab.train import TrainingError, fit, progressive_size, train_one_epoch


def test_warmup_starts_above_zero_and_cosine_ends_at_the_floor():
    f = [lr_factor(s, warmup_steps=4, total_steps=20, min_ratio=0.1) for s in range(20)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]
    assert f[4] == 1.0 and all(a >= b for a, b in zip(f[4:], f[5:], strict=False))
    assert lr_factor(20, warmup_steps=4, total_steps=20, min_ratio=0.1) == pytest.approx(0.1)
    mid = lr_factor(12, warmup_steps=4, total_steps=20)
    assert mid == pytest.approx(0.5)


def test_scheduler_steps_per_iteration():
    model = nn.Linear(2, 2)
    cfg = OptimConfig(lr=0.1, warmup_epochs=1)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=5, epochs=3)
    lrs = []
    for _ in range(15):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.02) and lrs[4] == pytest.approx(0.1)
    assert lrs[-1] < 0.01


def test_no_weight_decay_on_biases_and_norms():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    decay, no_decay = param_groups(model, OptimConfig(weight_decay=1e-4))
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3, 3, 3])]
    assert decay["weight_decay"] == 1e-4
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0
    assert isinstance(build_optimizer(model, OptimConfig(optimizer="adamw")), torch.optim.AdamW)
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(model, OptimConfig(optimizer="lion"))


def _loader(n=32, size=32, classes=3, batch=16):
    images, labels, _ = generate(n, size, num_classes=classes)
    return DataLoader(TensorDataset(images.float() / 255, labels), batch_size=batch)


def _fit(cfg: RunConfig, model: nn.Module, run: RunDir, epochs: int) -> None:
    """`fit` on 32 tiny synthetic images (2 steps an epoch) with the run's optimizer."""
    opt = build_optimizer(model, cfg.optim)
    sched = build_scheduler(opt, cfg.optim, steps_per_epoch=2, epochs=epochs)
    cpu, classes = torch.device("cpu"), ["a", "b", "c"]
    loaders = Loaders(_loader(), _loader())
    fit(cfg, model, loaders, device=cpu, run=run, classes=classes, optimizer=opt, scheduler=sched)


def test_a_few_training_steps_reduce_the_loss(device):
    model = SimpleNet(num_classes=3).to(device)
    loader = _loader()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    before = evaluate(model, loader, device=device)["loss"]
    for _ in range(8):
        train_one_epoch(model, loader, opt, CrossEntropy(), device=device)
    after = evaluate(model, loader, device=device)["loss"]
    assert after < 0.8 * before


def test_train_one_epoch_reports_percentages_and_counts_steps(device):
    model = SimpleNet(num_classes=3).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    log = EpochLog(step=5)
    metrics = train_one_epoch(
        model, _loader(), opt, CrossEntropy(), device=device, clip_grad=1.0, log=log
    )
    assert log.step == 7 and set(metrics) == {"loss", "acc1", "acc5"}
    assert 0 <= metrics["acc1"] <= 100 and metrics["acc5"] == 100.0  # 3 classes


def test_progressive_size_follows_ffcvs_schedule_in_steps_of_8():
    sizes = [progressive_size(p / 20, 40, 64, 0.25, 0.75) for p in range(21)]
    assert sizes[:6] == [40] * 6 and sizes[15:] == [64] * 6  # until 0.25, and from 0.75
    assert sizes == sorted(sizes) and all(size % 8 == 0 for size in sizes)
    assert progressive_size(0.5, 32, 64, 0.25, 0.75) == 48  # half-way up the ramp
    assert (
        progressive_size(0.3, 32, 64, 0.5, 0.5) == 32
        and progressive_size(0.5, 32, 64, 0.5, 0.5) == 64
    )


def _training_inputs(model: nn.Module) -> list[torch.Tensor]:
    """The inputs `model` gets in training mode, from now on."""
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0]) if m.training else None)
    return seen


def test_progressive_resizing_trains_each_step_on_its_batch_resized(device):
    model = SimpleNet(num_classes=3).to(device)
    seen = _training_inputs(model)
    loader = _loader(n=48)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sizes = {5: 16, 6: 24, 7: 32}  # by the optimizer steps done before the batch
    log = EpochLog(step=5)
    train_one_epoch(
        model, loader, opt, CrossEntropy(), device=device, log=log, input_size=sizes.get
    )
    assert [tuple(x.shape) for x in seen] == [(16, 3, 16, 16), (16, 3, 24, 24), (16, 3, 32, 32)]
    first = next(iter(loader))[0].to(device)
    expected = nn.functional.interpolate(first, size=(16, 16), mode="bilinear", antialias=True)
    torch.testing.assert_close(seen[0], expected)
    assert torch.equal(seen[2].cpu(), list(loader)[2][0])  # at full size: as loaded


def test_fit_grows_the_training_size_with_the_share_of_steps_done(tmp_path):
    cfg = RunConfig.from_dict({"image_size": 32, "progressive_resize": 16, "epochs": 2})
    torch.manual_seed(0)
    model = SimpleNet(num_classes=3)
    seen = _training_inputs(model)
    _fit(cfg, model, RunDir.create(tmp_path, "run"), epochs=2)
    # 4 steps: progress 0, 1/4, 1/2, 3/4 of a ramp from 1/4 to 3/4; validation at 32 px
    assert [x.shape[-1] for x in seen] == [16, 16, 24, 32]


class _Fixed(nn.Module):
    """Predicts class (index of the brightest channel) regardless of position."""

    def forward(self, x):
        return x.mean(dim=(2, 3)) * 10


def test_evaluate_known_answer_with_confusion_and_mirror_tta():
    x = torch.zeros(4, 3, 2, 2)
    x[0, 0], x[1, 1], x[2, 2], x[3, 0] = 1, 1, 1, 1
    y = torch.tensor([0, 1, 2, 1])  # the last one is wrong
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    cpu = torch.device("cpu")
    plain = evaluate(_Fixed(), loader, device=cpu, num_classes=3)
    assert plain["acc1"] == 75.0 and plain["confusion"].tolist() == [
        [1, 0, 0],
        [1, 1, 0],
        [0, 0, 1],
    ]
    tta = evaluate(_Fixed(), loader, device=cpu, tta=True)
    assert tta["acc1"] == 75.0 and tta["loss"] == pytest.approx(plain["loss"], rel=1e-5)


def test_evaluate_restores_training_mode():
    model = SimpleNet(num_classes=3).train()
    evaluate(model, _loader(n=4), device=torch.device("cpu"))
    assert model.training


class _NaN(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x.mean(dim=(2, 3)) * self.w * math.nan


@pytest.mark.faults
def test_a_non_finite_loss_stops_with_the_epoch_and_lr_and_saves_nothing(tmp_path):
    cfg = RunConfig.from_dict({"epochs": 2, "lr": 0.5})
    model = _NaN()
    run = RunDir(tmp_path)
    with pytest.raises(TrainingError, match=r"loss became nan at step 1 \(lr 0\.25\) in epoch 1"):
        _fit(cfg, model, run, epochs=2)
    assert not run.last.exists()


def _trained_copies(**fast) -> tuple[nn.Module, nn.Module]:
    """(plain, with `fast`): SimpleNet trained one epoch from the same start."""
    torch.manual_seed(0)
    plain = SimpleNet(num_classes=3)
    other = copy.deepcopy(plain)
    if fast["precision"].memory_format is torch.channels_last:
        other = other.to(memory_format=torch.channels_last)
    cpu = torch.device("cpu")
    for model, kwargs in ((plain, {}), (other, fast)):
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        train_one_epoch(model, _loader(), opt, CrossEntropy(), device=cpu, **kwargs)
    return plain, other


def test_channels_last_trains_the_same_model():
    from scenelab.runtime import Precision

    channels_last = Precision(torch.device("cpu"), channels_last=True)
    plain, other = _trained_copies(precision=channels_last)
    for (name, a), b in zip(plain.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name


def test_bf16_autocast_runs_in_bf16_and_stays_close_to_float32():
    from scenelab.runtime import Precision

    cpu = torch.device("cpu")
    bf16 = Precision(cpu, "bf16")
    with bf16.autocast():
        assert SimpleNet(num_classes=3)(torch.rand(2, 3, 32, 32)).dtype == torch.bfloat16
    plain, other = _trained_copies(precision=bf16)
    a = evaluate(plain, _loader(), device=cpu)
    b = evaluate(other, _loader(), device=cpu, precision=bf16)
    assert b["loss"] == pytest.approx(a["loss"], rel=0.05)
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        Precision(cpu, "fp16")


@pytest.mark.slow
def test_a_compiled_model_trains_and_saves_an_uncompiled_state_dict(tmp_path):
    cfg = RunConfig.from_dict({"epochs": 1, "lr": 0.05})
    model = SimpleNet(num_classes=3)
    compiled = torch.compile(model)
    run = RunDir(tmp_path)
    _fit(cfg, compiled, run, epochs=1)
    saved = torch.load(run.last, weights_only=True)["model"]
    assert saved.keys() == model.state_dict().keys()  # no _orig_mod. prefix
    fresh = SimpleNet(num_classes=3)
    fresh.load_state_dict(saved)
    assert all(
        torch.equal(a, b)
        for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True)
    )


class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3 * 32 * 32, 3)

    def forward(self, x):
        return self.head(x.flatten(1))


def test_accumulated_gradients_equal_one_step_on_the_larger_batch():
    images, labels, _ = generate(40, 32, num_classes=3)
    data = TensorDataset(images.float() / 255, labels)
    torch.manual_seed(0)
    small, large = _Linear(), _Linear()
    large.load_state_dict(small.state_dict())
    cpu = torch.device("cpu")
    opt = torch.optim.SGD(small.parameters(), lr=0.5, momentum=0.9)
    log = EpochLog()
    train_one_epoch(
        small,
        DataLoader(data, batch_size=8),
        opt,
        CrossEntropy(),
        device=cpu,
        accum_steps=3,
        log=log,
    )
    assert log.step == 2  # 5 batches: a step of 3, then one of the last 2
    batches = [list(range(24)), list(range(24, 40))]  # the same two steps, unaccumulated
    opt = torch.optim.SGD(large.parameters(), lr=0.5, momentum=0.9)
    train_one_epoch(large, DataLoader(data, batch_sampler=batches), opt, CrossEntropy(), device=cpu)
    for a, b in zip(small.parameters(), large.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_the_weight_average_is_the_exponential_average_of_every_step(tmp_path):
    cfg = RunConfig.from_dict({"epochs": 1, "lr": 0.1, "ema_decay": 0.5})
    torch.manual_seed(0)
    model, replay = _Linear(), _Linear()
    replay.load_state_dict(model.state_dict())
    run = RunDir(tmp_path)
    _fit(cfg, model, run, epochs=1)
    saved = torch.load(run.last, weights_only=True)
    opt = build_optimizer(replay, cfg.optim)
    sched = build_scheduler(opt, cfg.optim, steps_per_epoch=2, epochs=1)
    average = []

    def record(log):
        now = replay.head.weight.detach().clone()
        average.append(now if not average else 0.5 * average[-1] + 0.5 * now)

    train_one_epoch(
        replay,
        _loader(),
        opt,
        CrossEntropy(),
        device=torch.device("cpu"),
        scheduler=sched,
        on_step=[record],
    )
    assert len(average) == 2
    assert torch.allclose(saved["ema"]["module.head.weight"], average[-1], atol=1e-6)
