"""--time-budget spends its budget: the run ends between 0.95 and 1 of it with the learning rate
annealed, however the machine's speed changes (a simulated clock stands in for the machine)."""

import itertools
import json
import time

import pytest
import torch

from scenelab.budget import FINISH_SECONDS, TimeBudget
from scenelab.cli import main
from scenelab.optim import annealed
from scenelab.tracking import EpochLog

BUDGET = 1800.0  # 30 minutes
STEPS_PER_EPOCH = 100
STEP = 0.5  # seconds per step at full speed: 200 epochs' worth of steps would take 10,000 s


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(step_seconds, *, budget=BUDGET, val_per_image=0.002, steps_per_epoch=STEPS_PER_EPOCH):
    """A run as `fit` drives it (plan, train, validate; a subset of 1,000 images after each
    epoch, all 10,000 after the last), on a clock that moves `step_seconds(now, epoch)` per
    step (half that for an epoch's last step, a smaller batch). Returns (end time, progress of
    every step, the epochs planned after each epoch, steps)."""
    clock = Clock()
    clock.now = 20.0  # start-up and data preparation
    budget_ = TimeBudget(
        budget,
        started=0.0,
        steps_per_epoch=steps_per_epoch,
        epoch_images=1000,
        final_images=10_000,
        batch_size=128,
        clock=clock,
    )
    budget_.start(0)
    log, progress, epoch, planned = EpochLog(), [], 0, []
    while not planned or epoch < planned[-1]:
        epoch += 1
        clock.now += 2.0  # the loader's workers start
        for i in range(steps_per_epoch):
            clock.now += step_seconds(clock.now, epoch) / (2 if i == steps_per_epoch - 1 else 1)
            log.step += 1
            stop = budget_.on_step(log)
            progress.append(budget_.progress(log.step))
            if stop:
                break
        planned.append(budget_.epoch_end(epoch, log.step))
        images = 10_000 if epoch == planned[-1] else 1000
        seconds = 1.0 + val_per_image * images  # the workers' start, then per image
        clock.now += seconds
        budget_.validated(seconds, images)
    clock.now += 2.0  # the report (FINISH_SECONDS reserves more)
    return clock.now, progress, planned, log.step


def steady(now, epoch):
    return STEP


def slow_first_epoch(now, epoch):
    return 2 * STEP if epoch == 1 else STEP


def slows_by_half_mid_run(now, epoch):
    return STEP if now < BUDGET / 2 else 2 * STEP


def speeds_up_mid_run(now, epoch):
    return 2 * STEP if now < BUDGET / 2 else STEP


def load_comes_and_goes(now, epoch):
    return 3 * STEP if BUDGET / 4 < now < BUDGET / 2 else STEP


@pytest.mark.parametrize(
    "speed",
    [steady, slow_first_epoch, slows_by_half_mid_run, speeds_up_mid_run, load_comes_and_goes],
)
def test_the_run_ends_within_the_budget_with_the_schedule_annealed(speed):
    end, progress, planned, steps = simulate(speed)
    epochs = planned[-1]
    assert 0.95 * BUDGET <= end <= BUDGET
    assert progress[-1] == 1.0 and annealed(progress[-1]) == pytest.approx(0.0)
    assert progress == sorted(progress)  # it never goes back: the learning rate only falls
    assert max(b - a for a, b in itertools.pairwise(progress)) < 0.02  # and without jumps
    assert epochs == -(-steps // STEPS_PER_EPOCH)  # the last epoch is the one it stopped in


@pytest.mark.parametrize("steps_per_epoch", [100, 73])
def test_at_a_steady_speed_the_plan_does_not_jump_after_the_first_epoch(steps_per_epoch):
    # 73: an epoch ends a step after a plan, its last step a smaller batch (half the time)
    planned = simulate(steady, steps_per_epoch=steps_per_epoch)[2]
    assert max(abs(b - a) for a, b in itertools.pairwise(planned[1:])) <= 1, planned


def test_no_epoch_starts_for_fewer_steps_than_the_validation_before_it_costs():
    # Budgets from 5 to 20 minutes end anywhere in an epoch; a last epoch of a step or two (as
    # planned before) paid a 3 s subset validation (6 steps' time) for them.
    for budget in range(300, 1200, 7):
        end, _, planned, steps = simulate(steady, budget=float(budget))
        last_epoch_steps = steps - (planned[-1] - 1) * STEPS_PER_EPOCH
        assert last_epoch_steps >= 3.0 / STEP, (budget, planned[-1], last_epoch_steps)


def test_the_steps_follow_the_machine_speed():
    runs = {f.__name__: simulate(f)[3] for f in (steady, slows_by_half_mid_run, speeds_up_mid_run)}
    # Half the run at half speed: about 3/4 of the steady run's steps, both ways round.
    assert runs["slows_by_half_mid_run"] == pytest.approx(0.75 * runs["steady"], rel=0.03)
    assert runs["speeds_up_mid_run"] == pytest.approx(0.75 * runs["steady"], rel=0.03)


def test_a_budget_too_short_for_a_validation_still_stops_in_time():
    end, progress, planned, steps = simulate(steady, budget=60.0, val_per_image=0.001)
    assert end <= 60.0 and progress[-1] == 1.0 and planned == [1]


def test_a_resumed_budget_counts_the_time_spent_before():
    clock = Clock()
    kwargs = {"steps_per_epoch": 10, "epoch_images": 10, "final_images": 10, "batch_size": 4}
    first = TimeBudget(100.0, started=0.0, clock=clock, **kwargs)
    first.start(0)
    log = EpochLog()
    for _ in range(8):
        clock.now += 1.0
        log.step += 1
        first.on_step(log)
    saved = first.state_dict()
    assert saved["spent"] == 8.0 and saved["plan"]["end"] > 8
    clock.now = 500.0  # killed, restarted much later; this process started at 498
    resumed = TimeBudget(100.0, started=498.0, clock=clock, **kwargs)
    resumed.load_state_dict(saved)
    assert resumed.elapsed() == 10.0  # 8 s before the kill and this process's 2 s
    assert resumed.progress(8) == first.progress(8) and resumed.progress(9) == first.progress(9)


def test_the_schedule_runs_on_progress_after_its_warm_up():
    from scenelab.config import OptimConfig
    from scenelab.optim import build_scheduler

    progress = {"now": 0.0}
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    cfg = OptimConfig(lr=0.1, warmup_epochs=1)
    sched = build_scheduler(
        opt, cfg, steps_per_epoch=4, epochs=1, progress=lambda step: progress["now"]
    )
    rates = []
    for step in range(8):
        progress["now"] = step / 8
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[:3] == pytest.approx([0.025, 0.05, 0.075])  # the warm-up's ramp
    assert rates[4:] == pytest.approx([0.1 * annealed(s / 8) for s in range(3, 7)])  # cosine
    progress["now"] = 1.0
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)  # annealed, even in a warm-up


class ModuleClock:
    """`time.perf_counter` advancing `tick` seconds per module call, twice that once the
    budget's `slow_after` seconds have passed: a machine that slows by half mid-run."""

    def __init__(self, tick: float, slow_after: float) -> None:
        self.now, self.start, self.tick, self.slow_after = 1000.0, 1000.0, tick, slow_after

    def advance(self, *_) -> None:
        self.now += self.tick * (2 if self.now - self.start > self.slow_after else 1)

    def __call__(self) -> float:
        return self.now


def test_a_training_run_spends_its_budget_through_a_slowdown_and_a_resume(
    tmp_path, monkeypatch, capsys
):
    budget = 300.0
    clock = ModuleClock(tick=0.1, slow_after=budget / 2)
    handle = torch.nn.modules.module.register_module_forward_hook(clock.advance)
    monkeypatch.setattr(time, "perf_counter", clock)
    flags = (
        "--synth-train 64 --synth-val 48 --synth-classes 3 --image-size 32 --batch-size 16 "
        "--workers 0 --val-subset 16 --tta --time-budget 5m --stop-after 3"
    ).split()
    try:
        assert main(["train", *flags, "--out-dir", str(tmp_path)]) == 0
        (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
        before = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["budget"]
        clock.now += 1000.0  # the run is stopped for a while; that time does not count
        resumed = clock.now
        assert main(["train", "--resume", str(run / "checkpoints" / "last.pt")]) == 0
    finally:
        handle.remove()
    spent = before["spent"] + clock.now - resumed
    assert budget - budget * 0.05 - FINISH_SECONDS <= spent <= budget
    summary = json.loads((run / "summary.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert summary["time_budget_seconds"] == budget and summary["final_lr"] < 1e-3 * 0.05
    assert [r["val_images"] for r in rows] == [16] * (len(rows) - 1) + [48]  # all at the end
    assert summary["epochs"] == summary["epochs_planned"] == len(rows) > 3
    out = capsys.readouterr().out
    assert f"epoch {len(rows)}/{len(rows)}" in out and "time budget 5m: training stopped" in out
