"""The bank's files: written and read back bitwise, atomic per video, and refused when incomplete or foreign."""

from __future__ import annotations

import os

import numpy as np
import pytest

from data_pipelines import bank_files
from data_pipelines.bank_files import BankError, BankReader, Entry


def entries(seed: int = 0, grid=(3, 5), d: int = 8) -> list[Entry]:
    rng = np.random.RandomState(seed)
    out = []
    for t, n in ((903, 2), (901, 3), (902, 1)):          # out of order: the file is sorted by timestamp
        out.append(Entry(t, rng.uniform(0, 1, (n, 4)).astype(np.float32),
                         np.abs(rng.randn(n, *grid, d)).astype(np.float32) * 7))
    return out


def make_bank(root: str, dtype: str = "float16", fp: str = "fp-a", videos=("vid_a", "vid-b")) -> dict:
    bank_files.start_bank(root, fingerprint=fp, split="train", dtype=dtype, videos=list(videos))
    written = {}
    for i, v in enumerate(videos):
        written[v] = entries(i)
        bank_files.write_video(root, v, written[v], dtype)
    bank_files.mark_complete(root)
    return written


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_written_bank_reads_back_bitwise(tmp_path, dtype):
    written = make_bank(str(tmp_path), dtype)
    reader = BankReader(str(tmp_path), fingerprint="fp-a")
    for video, want in written.items():
        got = reader.read_video(video)
        assert sorted(got) == [901, 902, 903]
        for e in want:
            stored = got[e.timestamp]
            assert stored.maps.dtype == reader.dtype
            assert stored.maps.tobytes() == e.maps.astype(reader.dtype).tobytes()
            np.testing.assert_array_equal(stored.boxes, e.boxes)


def test_interrupted_write_is_not_taken_for_complete(tmp_path):
    """A temp file of a killed writer is not a finished video; a manifest without `complete` is refused."""
    root = str(tmp_path)
    bank_files.start_bank(root, fingerprint="fp-a", split="train", dtype="float16", videos=["vid_a", "vid-b"])
    bank_files.write_video(root, "vid_a", entries(), "float16")
    with open(os.path.join(root, "videos", ".vid-b.tfrecord.tmp-123"), "wb") as f:
        f.write(b"half a record")
    assert bank_files.finished_videos(root) == {"vid_a"}
    with pytest.raises(BankError, match=r"manifest.json: 1 videos not written yet, e.g. 'vid-b'"):
        bank_files.mark_complete(root)
    with pytest.raises(BankError, match=r"manifest.json: the bank is not complete"):
        BankReader(root)


def test_foreign_or_damaged_banks_rejected_by_file_and_key(tmp_path):
    root = str(tmp_path)
    make_bank(root)
    with pytest.raises(BankError, match=r"manifest.json: key 'fingerprint' is 'fp-a', expected 'fp-b'"):
        BankReader(root, fingerprint="fp-b")
    with pytest.raises(BankError, match=r"manifest.json: key 'split' is 'train', expected 'val'"):
        BankReader(root, fingerprint="fp-a", split="val")
    with pytest.raises(BankError, match=r"manifest.json: key 'fingerprint' is 'fp-a'.*delete"):
        bank_files.start_bank(root, fingerprint="fp-b", split="train", dtype="float16", videos=["vid_a", "vid-b"])
    reader = BankReader(root, fingerprint="fp-a")
    with pytest.raises(BankError, match=r"manifest.json: video 'other' is not in the bank \(split 'train'\)"):
        reader.read_video("other")
    os.remove(bank_files.video_path(root, "vid-b"))
    with pytest.raises(BankError, match=r"vid-b.tfrecord: missing file of video 'vid-b'"):
        reader.read_video("vid-b")
    with pytest.raises(BankError, match=r"no bank manifest"):
        BankReader(str(tmp_path / "nowhere"))
