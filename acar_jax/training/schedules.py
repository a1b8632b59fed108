"""Learning-rate schedules of the reference (`scheduler.py`): linear warmup, then step decay or cosine.

The reference sets the rate of iteration s before running it (`scheduler.step(curr_step)`, s from 0), so step 0
uses `base_lr`; epoch-valued milestones and warmup become steps by `int(epochs * steps_per_epoch)` (truncation),
and the cosine period is `num_epochs * steps_per_epoch`. The rate is a pure function of the global step, computed
on the host in float64 as the reference's Python does and fed to the jitted step as a scalar.

Milestones and warmup given in epochs follow the actual steps per epoch of the run (`TrainInput.steps_per_epoch`,
which shrinks as `train.batch_size` grows), so they stay at the same point of the data whatever the batch. Fields
given in steps (`num_steps`, `warmup_steps`, `milestone_steps`) are absolute.

Linear scaling rule (Goyal et al. 2017; the ACAR-Net author's advice for fewer GPUs): with
`train.scale_lr_with_batch`, `base_lr`, `warmup_lr` and `min_lr` are the rates of a global batch of
`train.reference_batch_size` clips and are multiplied by `batch_size / reference_batch_size` (the paper: 32 clips,
0.008 -> 0.064; 8 clips: 0.002 -> 0.016).
"""

from __future__ import annotations

import bisect
import dataclasses
import math

import ml_collections


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A warmup + step / cosine schedule in steps. `lr(step)` is the rate used by global step `step`."""

    type: str                          # "step" | "cosine"
    base_lr: float
    warmup_lr: float
    warmup_steps: int
    milestones: tuple[int, ...] = ()   # step: increasing step indices
    lr_mults: tuple[float, ...] = ()   # step: one factor per milestone (cumulative)
    total_steps: int = 0               # cosine: T_max
    min_lr: float = 0.0                # cosine: eta_min

    def __post_init__(self):
        if self.type not in ("step", "cosine"):
            raise ValueError(f"schedule type must be 'step' or 'cosine', got {self.type!r}")
        if self.base_lr <= 0:
            raise ValueError(f"base_lr must be > 0 (the reference divides by it), got {self.base_lr}")
        if self.type == "step":
            if len(self.milestones) != len(self.lr_mults):
                raise ValueError(f"{len(self.milestones)} milestones {self.milestones} but {len(self.lr_mults)} "
                                 f"lr_mults {self.lr_mults}: give one factor per milestone")
            if list(self.milestones) != sorted(self.milestones):
                raise ValueError(f"milestones must be increasing, got {self.milestones}")
        if self.type == "cosine" and self.total_steps <= self.warmup_steps:
            raise ValueError(f"cosine: total_steps ({self.total_steps}) must exceed warmup_steps "
                             f"({self.warmup_steps})")

    def lr(self, step: int) -> float:
        """The reference's `_get_new_lr()` after `scheduler.step(step)`."""
        if self.warmup_steps > 0 and step < self.warmup_steps:
            scale = ((step / self.warmup_steps) * (self.warmup_lr - self.base_lr) + self.base_lr) / self.base_lr
            return scale * self.base_lr
        if self.type == "step":
            cumulative = [1.0]
            for m in self.lr_mults:
                cumulative.append(cumulative[-1] * m)
            pos = bisect.bisect_right(self.milestones, step)
            return self.base_lr * (self.warmup_lr * cumulative[pos] / self.base_lr)
        ratio = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        target = self.min_lr + (self.warmup_lr - self.min_lr) * (1 + math.cos(math.pi * ratio)) / 2
        return self.base_lr * (target / self.base_lr)


def epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    """The reference's conversion: `int(epochs * epoch_steps)` (truncation)."""
    return int(epochs * steps_per_epoch)


def total_train_steps(train_config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    """Length of training: `train.num_steps` when > 0, else `int(num_epochs * steps_per_epoch)`."""
    if int(train_config.num_steps) > 0:
        return int(train_config.num_steps)
    total = epochs_to_steps(float(train_config.num_epochs), steps_per_epoch)
    if total < 1:
        raise ValueError(f"train.num_epochs={train_config.num_epochs} x {steps_per_epoch} steps per epoch is "
                         "less than one step; raise num_epochs or set train.num_steps")
    return total



def lr_scale(train_config: ml_collections.ConfigDict) -> float:
    """`batch_size / reference_batch_size` under `train.scale_lr_with_batch`, else 1."""
    if not bool(train_config.scale_lr_with_batch):
        return 1.0
    reference = int(train_config.reference_batch_size)
    if reference < 1:
        raise ValueError(f"config.train.reference_batch_size must be >= 1 with config.train.scale_lr_with_batch, "
                         f"got {reference}")
    return int(train_config.batch_size) / reference


def create_schedule(train_config: ml_collections.ConfigDict, steps_per_epoch: int) -> Schedule:
    """The schedule of `train_config.schedule` (configs/default.py) for `steps_per_epoch` global steps/epoch.

    `warmup_steps` / `milestone_steps` (the paper's AVA-Kinetics recipe is given in iterations) override the
    epoch-valued fields when set. The rates are scaled by `lr_scale(train_config)`.
    """
    sched = train_config.schedule
    if int(sched.warmup_steps) > 0:
        warmup = int(sched.warmup_steps)
    else:
        warmup = epochs_to_steps(float(sched.warmup_epochs), steps_per_epoch)
    if tuple(sched.milestone_steps):
        milestones = tuple(int(m) for m in sched.milestone_steps)
    else:
        milestones = tuple(epochs_to_steps(float(m), steps_per_epoch) for m in sched.milestone_epochs)
    scale = lr_scale(train_config)
    return Schedule(type=str(sched.type), base_lr=float(sched.base_lr) * scale,
                    warmup_lr=float(sched.warmup_lr) * scale, warmup_steps=warmup, milestones=milestones,
                    lr_mults=tuple(float(m) for m in sched.lr_mults),
                    total_steps=total_train_steps(train_config, steps_per_epoch),
                    min_lr=float(sched.min_lr) * scale)
