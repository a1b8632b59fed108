"""Bank windows: for each clip of a batch, the bank maps of the keyframes around it, padded to static shapes.

A window is every bank entry of the clip's video with |t - timestamp| <= radius seconds (AVA: 10, i.e. about
20 s), or every entry of the video (Kinetics: the whole clip, at most 10 s); the current keyframe's own entries
are in it by construction. Entries (keyframes x actors, in time then actor order) fill `max_entries` slots; a
window with more entries is an error naming the keyframe and `bank.max_entries`, never cut. Each map is placed
top-left on the batch's first-order grid (zeros around it) and, for a horizontally flipped clip, mirrored
within its crop, as the clip was.

Reading: only the window's seconds are read from the video's file (through its record index), and the entries
of recently read seconds stay in an LRU cache of `cache_mb` megabytes, so consecutive keyframes of one video
(evaluation order) read each second once. A bank written without an index is read a whole video at a time.

`check_covers(video_ids)` and `check_windows(keyframes, counts)` are the consumer's start-up checks: every video
the run will read is in the bank with its file, and every window it will read is non-empty and fits
`max_entries` (else an error naming the manifest, the file or the keyframe and the key), so a bad bank stops
the run before step 0, not in the middle of an epoch.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable

import numpy as np

from data_pipelines.bank_files import MANIFEST, BankError, BankReader, Entry, video_path


class BankWindows:
    """Windows of one bank (one split at one scale)."""

    def __init__(self, reader: BankReader, *, radius: int, whole_video: bool, max_entries: int,
                 cache_mb: float = 1024.0):
        if max_entries < 1:
            raise ValueError(f"bank.max_entries: expected >= 1, got {max_entries}")
        if cache_mb < 0:
            raise ValueError(f"bank.cache_mb: expected >= 0, got {cache_mb}")
        self.reader = reader
        self.radius = int(radius)
        self.whole_video = bool(whole_video)
        self.max_entries = int(max_entries)
        self._cache: collections.OrderedDict[tuple[str, int], Entry] = collections.OrderedDict()
        self._cache_bytes, self._cache_limit = 0, int(cache_mb * 2**20)
        self._seconds: dict[str, list[int]] = {}

    def check_covers(self, video_ids: Iterable[str]) -> None:
        """Raises BankError naming the manifest (a video not in the bank) or the file (listed, not on disk)."""
        wanted = sorted(set(video_ids))
        missing = [v for v in wanted if v not in self.reader.videos]
        if missing:
            raise BankError(f"{os.path.join(self.reader.root, MANIFEST)}: {len(missing)} of the {len(wanted)} "
                            f"videos to read are not in this bank (split {self.reader.manifest['split']!r}), "
                            f"e.g. {missing[0]!r}: a bank of another dataset or split; extract it again")
        for video_id in wanted:
            path = video_path(self.reader.root, video_id)
            if not os.path.isfile(path):
                raise BankError(f"{path}: missing file of video {video_id!r}, listed in the bank's manifest")

    def check_windows(self, keyframes: Iterable[tuple[str, int]], counts: dict[str, dict[int, int]]) -> None:
        """Start-up check of every window a run will read: `keyframes` (video, timestamp) of clips with actors,
        `counts` video -> timestamp -> entries in the bank. An empty window, or one with more entries than
        max_entries, is a BankError naming the keyframe and the key (before step 0, not in the middle of an
        epoch)."""
        largest, where = 0, None
        for video_id, timestamp in keyframes:
            per_time = counts.get(video_id, {})
            n = sum(c for t, c in per_time.items() if self.whole_video or abs(t - int(timestamp)) <= self.radius)
            if n == 0:
                raise BankError(f"{self.reader.root}: the window of keyframe ({video_id!r}, {timestamp}) has no "
                                f"entries (bank.window_radius = {self.radius} s): the bank lacks this part of the "
                                f"video")
            if n > largest:
                largest, where = n, (video_id, int(timestamp))
        if largest > self.max_entries:
            raise BankError(f"{self.reader.root}: the window of keyframe {where} holds {largest} entries, more than "
                            f"bank.max_entries = {self.max_entries}; set it to at least {largest}")

    def seconds(self, video_id: str) -> list[int]:
        """The video's keyframe seconds in the bank, sorted."""
        if video_id not in self._seconds:
            index = self.reader.index(video_id)
            if index is None:
                self._remember(video_id, self.reader.read_video(video_id))
            else:
                self._seconds[video_id] = sorted({t for t, _, _, _ in index})
        return self._seconds[video_id]

    def _remember(self, video_id: str, entries: dict[int, Entry]) -> None:
        """Puts entries at the fresh end of the cache, then evicts the stalest beyond the budget."""
        self._seconds.setdefault(video_id, sorted(entries))
        for t, entry in entries.items():
            key = (video_id, t)
            if key in self._cache:
                self._cache_bytes -= self._cache.pop(key).maps.nbytes
            self._cache[key] = entry
            self._cache_bytes += entry.maps.nbytes
        while self._cache_bytes > self._cache_limit and self._cache:
            self._cache_bytes -= self._cache.popitem(last=False)[1].maps.nbytes

    def _window(self, video_id: str, timestamp: int) -> list[Entry]:
        times = [t for t in self.seconds(video_id) if self.whole_video or abs(t - int(timestamp)) <= self.radius]
        found = {}
        for t in times:
            if (video_id, t) in self._cache:
                self._cache.move_to_end((video_id, t))
                found[t] = self._cache[(video_id, t)]
        missing = [t for t in times if t not in found]
        if missing:
            read = (self.reader.read_seconds(video_id, missing) if self.reader.index(video_id) is not None
                    else self.reader.read_video(video_id))     # no index: the whole file, cached as far as it fits
            found.update({t: read[t] for t in missing})
            self._remember(video_id, read)
        return [found[t] for t in times]

    def entries(self, video_id: str, timestamp: int) -> list[np.ndarray]:
        """The window's maps, one [h, w, D] array per (keyframe, actor), in time then actor order."""
        maps = [m for entry in self._window(video_id, timestamp) for m in entry.maps]
        if not maps:
            raise BankError(f"{self.reader.root}: the window of keyframe ({video_id!r}, {timestamp}) has no "
                            f"entries (bank.window_radius = {self.radius} s): the bank lacks this part of the "
                            f"video")
        if len(maps) > self.max_entries:
            raise BankError(f"{self.reader.root}: the window of keyframe ({video_id!r}, {timestamp}) holds "
                            f"{len(maps)} entries, more than bank.max_entries = {self.max_entries}; raise it")
        return maps

    def batch(self, video_ids, timestamps, clip_mask, flipped, grid_hw: tuple[int, int]
              ) -> tuple[np.ndarray, np.ndarray]:
        """(bank [B, max_entries, h, w, D] in the storage dtype, bank_mask [B, max_entries]) for a batch whose
        first-order grid is grid_hw; clips with clip_mask False (fillers) get an empty, masked window."""
        gh, gw = (int(v) for v in grid_hw)
        b = len(video_ids)
        windows = [self.entries(str(v), int(t)) if real else []
                   for v, t, real in zip(video_ids, timestamps, clip_mask, strict=True)]
        depth = next((w[0].shape[-1] for w in windows if w), 1)
        bank = np.zeros((b, self.max_entries, gh, gw, depth), self.reader.dtype)
        mask = np.zeros((b, self.max_entries), bool)
        for i, window in enumerate(windows):
            for j, fmap in enumerate(window):
                eh, ew = fmap.shape[:2]
                if eh > gh or ew > gw:
                    raise BankError(f"{self.reader.root}: keyframe ({video_ids[i]!r}, {timestamps[i]}) has bank "
                                    f"maps of {eh}x{ew}, larger than the batch's {gh}x{gw} grid: a bank of "
                                    f"another scale (one bank per scale)")
                bank[i, j, :eh, :ew] = fmap[:, ::-1] if flipped[i] else fmap
                mask[i, j] = True
        return bank, mask
