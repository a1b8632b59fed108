"""SIGTERM / SIGINT as a flag the loop checks every step, so a preempted run saves and exits cleanly."""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """Turns SIGTERM / SIGINT into a flag the loop checks each step (it saves and exits cleanly)."""

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def __bool__(self) -> bool:
        return self.signal is not None

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
