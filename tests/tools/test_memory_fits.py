"""benchmarks/memory.py's fit: clips per device that fit a device, from the per-device memory at two batches."""

from benchmarks.memory import clips_that_fit


def test_clips_that_fit_follow_the_line_through_the_smallest_and_largest_batch():
    by_batch = {1: 4e9, 2: 7e9, 4: 13e9}                 # fixed 1e9 + 3e9 per clip
    assert clips_that_fit(by_batch, 16e9) == 5           # 1 + 5 * 3 = 16 fits exactly
    assert clips_that_fit(by_batch, 15.9e9) == 4
    assert clips_that_fit(by_batch, 3e9) == 0            # not even one clip
    assert clips_that_fit({1: 4e9, 2: 4e9}, 16e9) == 0   # no growth measured: no claim
