"""Bank windows: padded and masked to static shapes, flipped with the clip, never cut, errors by key."""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
import pytest

from acar_jax.models.acfb_head import flip_maps
from data_pipelines import bank_files
from data_pipelines.bank_files import BankError, BankReader, Entry
from data_pipelines.bank_windows import BankWindows

GRID = (4, 6)


def make_reader(root: str) -> tuple[BankReader, dict]:
    """vid: keyframes 901, 902, 903, 920 with 1, 2, 1, 3 actors on a 3x5 crop, D = 2, float32 storage."""
    rng = np.random.RandomState(0)
    entries = {t: Entry(t, np.zeros((n, 4), np.float32), rng.randn(n, 3, 5, 2).astype(np.float32))
               for t, n in ((901, 1), (902, 2), (903, 1), (920, 3))}
    bank_files.start_bank(root, fingerprint="f", split="train", dtype="float32", videos=["vid"])
    bank_files.write_video(root, "vid", list(entries.values()), "float32")
    bank_files.mark_complete(root)
    return BankReader(root, fingerprint="f"), entries


def test_windows_of_different_sizes_padded_and_masked(tmp_path):
    reader, entries = make_reader(str(tmp_path))
    windows = BankWindows(reader, radius=1, whole_video=False, max_entries=5)
    bank, mask = windows.batch(["vid", "vid", "vid", ""], [902, 901, 920, 0], [True, True, True, False],
                               [False, False, False, False], GRID)
    assert bank.shape == (4, 5, *GRID, 2) and mask.shape == (4, 5)
    np.testing.assert_array_equal(mask.sum(1), [4, 3, 3, 0])          # 901+902+903; 901+902; 920; filler
    want = np.concatenate([entries[t].maps for t in (901, 902, 903)])  # time then actor order, own entry inside
    np.testing.assert_array_equal(bank[0, :4, :3, :5], want)
    assert not bank[0, :, 3:].any() and not bank[0, :, :, 5:].any() and not bank[0, 4:].any()
    everything = BankWindows(reader, radius=0, whole_video=True, max_entries=7)
    assert everything.batch(["vid"], [901], [True], [False], GRID)[1].sum() == 7


def test_flipped_clip_gets_maps_mirrored_within_the_crop(tmp_path):
    reader, _ = make_reader(str(tmp_path))
    windows = BankWindows(reader, radius=1, whole_video=False, max_entries=5)
    plain, _ = windows.batch(["vid"], [902], [True], [False], GRID)
    flipped, _ = windows.batch(["vid"], [902], [True], [True], GRID)
    np.testing.assert_array_equal(flipped, np.asarray(flip_maps(jnp.asarray(plain), jnp.asarray([5]))))
    assert not np.array_equal(flipped, plain)


def test_window_errors_name_the_keyframe_and_key(tmp_path):
    reader, _ = make_reader(str(tmp_path))
    with pytest.raises(BankError, match=r"\('vid', 902\) holds 4 entries, more than bank.max_entries = 3"):
        BankWindows(reader, radius=1, whole_video=False, max_entries=3).batch(["vid"], [902], [True], [False], GRID)
    windows = BankWindows(reader, radius=1, whole_video=False, max_entries=5)
    with pytest.raises(BankError, match=r"keyframe \('vid', 910\) has no entries \(bank.window_radius = 1 s\)"):
        windows.batch(["vid"], [910], [True], [False], GRID)
    with pytest.raises(BankError, match=r"video 'other' is not in the bank"):
        windows.batch(["other"], [902], [True], [False], GRID)
    with pytest.raises(BankError, match=r"maps of 3x5, larger than the batch's 2x6 grid: a bank of another scale"):
        windows.batch(["vid"], [902], [True], [False], (2, 6))


def test_start_up_check_finds_empty_and_overfull_windows_before_any_batch(tmp_path):
    reader, entries = make_reader(str(tmp_path))
    counts = {"vid": {t: e.maps.shape[0] for t, e in entries.items()}}        # 901: 1, 902: 2, 903: 1, 920: 3
    windows = BankWindows(reader, radius=1, whole_video=False, max_entries=4)
    windows.check_windows([("vid", 902), ("vid", 920)], counts)               # 4 and 3 entries: fine
    with pytest.raises(BankError, match=r"keyframe \('vid', 910\) has no entries \(bank.window_radius = 1 s\)"):
        windows.check_windows([("vid", 902), ("vid", 910)], counts)
    with pytest.raises(BankError, match=r"keyframe \('vid', 902\) holds 4 entries, more than bank.max_entries = 3; "
                                        r"set it to at least 4"):
        BankWindows(reader, radius=1, whole_video=False, max_entries=3).check_windows([("vid", 902)], counts)


class CountingReader:
    """A BankReader that counts which seconds were read from disk."""

    def __init__(self, reader: BankReader):
        self.inner, self.read = reader, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def read_seconds(self, video_id, seconds):
        seconds = sorted(seconds)
        self.read.append(seconds)
        return self.inner.read_seconds(video_id, seconds)


def test_indexed_windows_read_only_their_seconds_and_equal_whole_file_reads(tmp_path):
    """Through the record index a window reads only the seconds it lacks; the values equal a whole-file read
    bitwise, and a bank without an index (written before it existed) gives the same batches."""
    reader, _ = make_reader(str(tmp_path))
    whole = reader.read_video("vid")
    part = reader.read_seconds("vid", [902, 920])
    assert sorted(part) == [902, 920]
    for t in part:
        assert part[t].maps.tobytes() == whole[t].maps.tobytes()
        np.testing.assert_array_equal(part[t].boxes, whole[t].boxes)
    counting = CountingReader(reader)
    windows = BankWindows(counting, radius=1, whole_video=False, max_entries=5)
    first, _ = windows.batch(["vid"], [901], [True], [False], GRID)       # reads 901, 902
    second, _ = windows.batch(["vid"], [902], [True], [False], GRID)      # 901, 902 cached: reads 903 only
    assert counting.read == [[901, 902], [903]]
    os.remove(bank_files.index_path(str(tmp_path), "vid"))
    old = BankWindows(BankReader(str(tmp_path)), radius=1, whole_video=False, max_entries=5)
    np.testing.assert_array_equal(old.batch(["vid"], [901], [True], [False], GRID)[0], first)
    np.testing.assert_array_equal(old.batch(["vid"], [902], [True], [False], GRID)[0], second)


def test_cache_stays_within_its_budget_and_a_wrong_index_is_named(tmp_path):
    reader, entries = make_reader(str(tmp_path))
    one_second = entries[902].maps.nbytes                                   # 2 actors x 3 x 5 x 2 float32
    counting = CountingReader(reader)
    windows = BankWindows(counting, radius=0, whole_video=False, max_entries=5, cache_mb=one_second / 2**20)
    for t in (902, 901, 902):
        windows.batch(["vid"], [t], [True], [False], GRID)
    assert counting.read == [[902], [901], [902]]                           # 901 evicted 902
    assert windows._cache_bytes <= one_second
    path = bank_files.index_path(str(tmp_path), "vid")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("[903,0,", "[903,0,1"))                   # a wrong offset
    with pytest.raises(BankError, match=r"vid.tfrecord: no record of \d+ bytes at offset 1\d+ as .*vid.index.json"):
        BankReader(str(tmp_path)).read_seconds("vid", [903])
    with open(path, "w") as f:
        f.write("{}")
    with pytest.raises(BankError, match=r"vid.index.json: not a bank index of video 'vid'"):
        BankReader(str(tmp_path)).read_seconds("vid", [903])
