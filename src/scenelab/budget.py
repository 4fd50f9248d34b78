"""`--time-budget T`: a run that ends within T of wall time with its learning rate annealed,
however the machine's speed changes on the way.

The schedule runs on progress (0 to 1) instead of a count of epochs fixed once. `TimeBudget`
plans: from the measured seconds per optimizer step it works out the steps that fit in the
time left, after the validations still to come (timed as they happen) and a reserve for the
last one on all images, the report and a margin of 2% of T. It plans again every 1% of T and
at every epoch's end, so a slow first epoch, or load arriving or leaving mid-run, moves the
end of the schedule with it. At each plan, progress is the larger of the schedule's own (steps
done along the last plan) and the share of the training time spent; it never goes back, and
the plan spreads what is left over the steps that fit. Training stops at the step where
progress reaches 1, part-way through an epoch if need be.

Under torchrun, rank 0 plans and every process follows: one broadcast per plan, at steps all
processes know in advance. The plan and the time spent are saved in checkpoints, so a resumed
run goes on with the time it had left (the time it was not running does not count).
"""

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .runtime import broadcast_object, rank

FINISH_SECONDS = 5.0  # summary, the final evaluation's files and the report, after training
MARGIN = 0.02  # of the budget: kept in hand against the last plan's misjudgement
PLAN_EVERY = 0.01  # of the budget: plan again after about this much time
FIRST_PLAN = 5  # the first plan, at this step, times the steps since the first one


@dataclass(frozen=True)
class Plan:
    """Progress `progress` at optimizer step `step`, growing linearly to 1 at step `end`; the
    next plan is at step `next`. `end <= step`: the budget is spent, training stops."""

    step: int = 0
    progress: float = 0.0
    end: int | None = None  # None: nothing measured yet, progress stays at `progress`
    next: int = FIRST_PLAN

    def at(self, step: int) -> float:
        if self.end is None:
            return self.progress
        if self.end <= self.step:
            return 1.0
        done = (step - self.step) / (self.end - self.step)
        return min(1.0, self.progress + (1.0 - self.progress) * max(done, 0.0))

    def done(self, step: int) -> bool:
        return self.end is not None and self.end <= step


class TimeBudget:
    """Plans a run of `seconds` that started at `started` on `clock` (the process's start, so
    imports and data preparation count). `steps_per_epoch` optimizer steps an epoch;
    validation runs on `epoch_images` after each epoch but the last and on `final_images` after
    it, `val_passes` forward passes an image (2 with TTA, twice that with a weight average),
    which guesses its cost from the step time until a validation has been timed.

    `fit` calls `start` once, `on_step` after every optimizer step (True: stop here),
    `epoch_end` after each epoch's training (the epochs now planned) and `validated` after each
    validation; `progress(step)` drives the learning-rate schedule.
    """

    def __init__(
        self,
        seconds: float,
        *,
        started: float,
        steps_per_epoch: int,
        epoch_images: int,
        final_images: int,
        batch_size: int,
        val_passes: int = 1,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.seconds, self.started = seconds, started
        self.clock = clock or time.perf_counter  # looked up now: tests may replace it
        self.steps_per_epoch, self.batch_size = max(steps_per_epoch, 1), batch_size
        self.epoch_images, self.final_images, self.val_passes = (
            epoch_images,
            final_images,
            val_passes,
        )
        self.plan = Plan()
        self.train_seconds = 0.0  # measured training time, validations excluded
        self.step_seconds: float | None = None
        self.val_seconds_per_image: float | None = None
        self.val_fixed_seconds = 0.0  # per validation, whatever its size (robust accuracy)
        self._validating = 0.0  # seconds of validation so far (this process)
        self._mark: tuple[int, float, float] | None = None  # step, clock, validating
        self._first = False  # the next step is the first of this process
        self._min_steps = 0  # the fewest steps a measurement of the step time spans

    # --- what fit calls -----------------------------------------------------------------
    def progress(self, step: int) -> float:
        return self.plan.at(step)

    def start(self, step: int) -> None:
        """Training starts (or resumes) at optimizer step `step`."""
        self._mark = (step, self.clock(), self._validating)
        self._first = True

    def on_step(self, log) -> bool:
        """After optimizer step `log.step`: plan when due; True when the budget is spent."""
        if self._first:  # its time holds the workers' start: measure from here
            self._first = False
            self._mark = (log.step, self.clock(), self._validating)
        if log.step >= self.plan.next:
            self._replan(log.step)
        return self.done(log.step)

    def epoch_end(self, epoch: int, step: int) -> int:
        """An epoch's training is done at `step`: plan, and return the epochs the run now has
        (`epoch` itself when the budget is spent, so that its validation is the last)."""
        if not self.done(step):  # a stop is final
            self._replan(step)
        if self.done(step):
            return epoch
        return max(epoch + 1, math.ceil(self.plan.end / self.steps_per_epoch))

    def validated(self, seconds: float, images: int, fixed_seconds: float = 0.0) -> None:
        """A validation of `images` took `seconds`, plus `fixed_seconds` that do not grow with
        the images (robust accuracy on its fixed subset)."""
        self._validating += seconds + fixed_seconds
        self.val_seconds_per_image = seconds / max(images, 1)
        self.val_fixed_seconds = fixed_seconds

    def done(self, step: int) -> bool:
        return self.plan.done(step)

    def elapsed(self) -> float:
        return self.clock() - self.started

    # --- planning -------------------------------------------------------------------------
    def _replan(self, step: int) -> None:
        plan = None
        if rank() == 0:
            self._measure(step)
            plan = self._planned(step)
        self.plan = broadcast_object(plan)  # under torchrun: rank 0's, everywhere

    def _measure(self, step: int) -> None:
        """Seconds per step over the steps since the last measurement, validations left out.
        A plan at an epoch's end may come a step or two after the last one: such a short
        stretch (an epoch's last, smaller batch) would misjudge the speed, so it waits to be
        measured with the steps after it."""
        now = self.clock()
        if self._mark is not None:
            marked, then, validating = self._mark
            if step - marked < max(self._min_steps, 1) and self.step_seconds is not None:
                return
            train = max(now - then - (self._validating - validating), 0.0)
            if step > marked:
                self.train_seconds += train
                self.step_seconds = max(train, 1e-9) / (step - marked)
        self._mark = (step, now, self._validating)

    def _planned(self, step: int) -> Plan:
        step_s = self.step_seconds or 1e-9  # unmeasured: plan on as if steps were free
        per_image = self.val_seconds_per_image
        if per_image is None:  # a forward pass costs about a third of a training step
            per_image = self.val_passes * step_s / (3 * max(self.batch_size, 1))
        per_epoch = per_image * self.epoch_images + self.val_fixed_seconds
        last = per_image * self.final_images + self.val_fixed_seconds
        left = self.seconds * (1 - MARGIN) - self.elapsed() - last - FINISH_SECONDS
        steps = self._steps_that_fit(step, left, step_s, per_epoch)
        end = step + math.floor(steps)
        spent = self.train_seconds / max(self.train_seconds + steps * step_s, 1e-9)
        progress = 1.0 if end <= step else max(self.progress(step), min(spent, 1.0))
        every = max(1, round(PLAN_EVERY * self.seconds / step_s))
        self._min_steps = every // 2
        return Plan(step, progress, end, step + every)

    def _steps_that_fit(self, step: int, left: float, step_s: float, per_epoch: float) -> float:
        """The steps after `step` that fit in `left` seconds, each epoch that ends before
        them followed by its validation (`per_epoch` seconds; the last one is reserved)."""
        epoch = self.steps_per_epoch
        if step > 0 and step % epoch == 0:  # at an epoch's end: its validation comes first
            left -= per_epoch
        first = epoch - step % epoch  # the steps to this epoch's end
        if left <= first * step_s:
            return max(left, 0.0) / step_s
        left -= first * step_s + per_epoch  # ... and its validation, to go on after it
        whole = math.floor(max(left, 0.0) / (epoch * step_s + per_epoch))
        rest = max(left - whole * (epoch * step_s + per_epoch), 0.0) / step_s
        if rest * step_s < per_epoch:  # too few to pay for the validation that precedes them
            rest = 0.0
        return first + whole * epoch + min(rest, epoch)

    # --- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "spent": self.elapsed(),
            "plan": asdict(self.plan),
            "train_seconds": self.train_seconds,
            "step_seconds": self.step_seconds,
            "val_seconds_per_image": self.val_seconds_per_image,
            "val_fixed_seconds": self.val_fixed_seconds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue a saved budget: the time it had spent counts on top of this process's,
        the time between them does not."""
        self.started -= state["spent"]
        self.plan = Plan(**state["plan"])
        self.train_seconds = state["train_seconds"]
        self.step_seconds = state["step_seconds"]
        self.val_seconds_per_image = state["val_seconds_per_image"]
        self.val_fixed_seconds = state["val_fixed_seconds"]
