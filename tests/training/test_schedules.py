"""The learning-rate schedule equals the reference's `StepLRScheduler` / `CosineLRScheduler` at every step."""

import math

import pytest

from acar_jax.training import schedules
from configs import base as base_config


def _expected_step_lr(s: int) -> float:
    """The reference (scheduler.py) written out for base 0.008, warmup 0.064 over 10 steps, milestones 60/80,
    mults 0.1/0.1: warmup `((s/10) * (0.064 - 0.008) + 0.008) / 0.008 * 0.008`, then 0.064 * 0.1**(#milestones
    <= s) (bisect_right: the milestone step itself already uses the lower rate)."""
    if s < 10:
        return ((s / 10) * (0.064 - 0.008) + 0.008) / 0.008 * 0.008
    if s < 60:
        return 0.064
    if s < 80:
        return 0.064 * 0.1
    return 0.064 * 0.1 * 0.1


def test_step_schedule_equals_reference_at_every_step_of_100():
    sched = schedules.Schedule(type="step", base_lr=0.008, warmup_lr=0.064, warmup_steps=10,
                               milestones=(60, 80), lr_mults=(0.1, 0.1))
    assert sched.lr(0) == 0.008                  # step 0 uses base_lr (scheduler.step(0) before iteration 0)
    assert sched.lr(5) == pytest.approx(0.036, rel=1e-12)
    for s in range(100):
        assert sched.lr(s) == pytest.approx(_expected_step_lr(s), rel=1e-12, abs=0), s


def test_epoch_fields_convert_to_steps_by_truncation_as_the_reference():
    train = base_config.get_train_config()
    train.num_epochs = 10.0
    train.schedule.warmup_epochs = 1.0
    train.schedule.milestone_epochs = (6.0, 8.0)
    sched = schedules.create_schedule(train, steps_per_epoch=10)
    assert (sched.warmup_steps, sched.milestones) == (10, (60, 80))
    assert [sched.lr(s) for s in range(100)] == pytest.approx([_expected_step_lr(s) for s in range(100)],
                                                              rel=1e-12)
    # the paper's R50 config: milestones 5.6 / 5.8 epochs of 7 steps -> int(39.2), int(40.6)
    train.schedule.milestone_epochs = (5.6, 5.8)
    train.schedule.warmup_epochs = 0.5
    sched = schedules.create_schedule(train, steps_per_epoch=7)
    assert (sched.warmup_steps, sched.milestones) == (3, (39, 40))


def test_step_overrides_epoch_fields():
    train = base_config.get_train_config()
    train.num_steps = 55000
    train.schedule.warmup_steps = 9000
    train.schedule.milestone_steps = (51000, 53000)
    sched = schedules.create_schedule(train, steps_per_epoch=123)
    assert (sched.warmup_steps, sched.milestones, sched.total_steps) == (9000, (51000, 53000), 55000)


def test_cosine_equals_reference_formula():
    sched = schedules.Schedule(type="cosine", base_lr=0.008, warmup_lr=0.064, warmup_steps=10, total_steps=100,
                               min_lr=0.0001)
    for s in range(100):
        if s < 10:
            want = ((s / 10) * (0.064 - 0.008) + 0.008) / 0.008 * 0.008
        else:
            target = 0.0001 + (0.064 - 0.0001) * (1 + math.cos(math.pi * (s - 10) / 90)) / 2
            want = target / 0.008 * 0.008
        assert sched.lr(s) == pytest.approx(want, rel=1e-12), s


@pytest.mark.parametrize("kwargs, match", [
    (dict(type="linear"), "type"),
    (dict(milestones=(60,), lr_mults=(0.1, 0.1)), "one factor per milestone"),
    (dict(milestones=(80, 60), lr_mults=(0.1, 0.1)), "increasing"),
    (dict(base_lr=0.0), "base_lr"),
])
def test_bad_schedule_is_named(kwargs, match):
    args = dict(type="step", base_lr=0.008, warmup_lr=0.064, warmup_steps=10, milestones=(60, 80),
                lr_mults=(0.1, 0.1))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        schedules.Schedule(**args)


def test_linear_scaling_rule_scales_the_rates_by_batch_over_reference():
    train = base_config.get_train_config()
    train.scale_lr_with_batch, train.reference_batch_size = True, 32
    train.num_steps = 100
    for batch, base, peak in ((32, 0.008, 0.064), (8, 0.002, 0.016), (64, 0.016, 0.128)):
        train.batch_size = batch
        sched = schedules.create_schedule(train, steps_per_epoch=10)
        assert (sched.base_lr, sched.warmup_lr) == pytest.approx((base, peak), rel=1e-12), batch
        assert sched.lr(0) == pytest.approx(base, rel=1e-12) and sched.lr(10) == pytest.approx(peak, rel=1e-12)
        assert sched.lr(57) == pytest.approx(peak * 0.1, rel=1e-12)      # milestones 56, 58
    train.scale_lr_with_batch = False                   # off: the rates as given, whatever the batch
    assert schedules.create_schedule(train, steps_per_epoch=10).warmup_lr == 0.064
    train.scale_lr_with_batch, train.reference_batch_size = True, 0
    with pytest.raises(ValueError, match="config.train.reference_batch_size must be >= 1"):
        schedules.create_schedule(train, steps_per_epoch=10)


def test_epoch_milestones_follow_the_actual_steps_per_epoch_of_each_batch_size():
    """The paper's R50 schedule on 1,000 keyframes: steps per epoch is the data over the batch, and the warmup
    and milestones land on the same epochs (1, 5.6, 5.8) at any batch size, as the reference's int(x * E)."""
    from configs import ava_slowfast_r50_acar  # noqa: PLC0415

    train = ava_slowfast_r50_acar.get_config().train
    for batch in (32, 8, 2):
        train.batch_size = batch
        steps_per_epoch = 1000 // batch
        sched = schedules.create_schedule(train, steps_per_epoch)
        assert sched.warmup_steps == steps_per_epoch
        assert sched.milestones == (int(5.6 * steps_per_epoch), int(5.8 * steps_per_epoch))
        assert sched.total_steps == 6 * steps_per_epoch
        assert sched.warmup_lr == pytest.approx(0.064 * batch / 32, rel=1e-12)
