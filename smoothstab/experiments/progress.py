"""A small progress bar on stderr, with rate and time left::

    model 0 epoch 3/30 12/21 [###########---------] loss 0.3120 acc 0.9140  8.4/s ETA 0:01

On a terminal the bar redraws in place (at most ten times a second); elsewhere (a log file, CI)
it writes one line when it closes, with the rate and the time taken. Quiet mode -- ``quiet=True``
or the environment variable ``CI=true`` -- writes nothing; callers print their one final line
with :func:`say`. (Hand-written rather than tqdm, which is not a dependency of the package.)
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


def is_quiet(quiet: bool = False) -> bool:
    """``quiet``, or running under CI (``CI`` set to true/1/yes)."""
    return quiet or os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def say(line: str, stream: TextIO | None = None) -> None:
    """One line on stderr (shown in quiet mode too)."""
    print(line, file=stream or sys.stderr, flush=True)


class Progress:
    """A bar for ``total`` steps; ``update(loss=..., acc=...)`` after each step."""

    def __init__(
        self,
        total: int,
        label: str,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        start: int = 0,
        width: int = 20,
    ) -> None:
        self.total, self.label, self.done, self.width = total, label, start, width
        self.stream = stream or sys.stderr
        self.quiet = is_quiet(quiet)
        self.live = not self.quiet and self.stream.isatty()
        self.metrics: dict[str, float] = {}
        self._last_draw = 0.0
        self._start, self._first = time.monotonic(), start  # the rate counts this run's steps

    def update(self, n: int = 1, **metrics: float) -> None:
        self.done += n
        self.metrics.update(metrics)
        now = time.monotonic()
        if self.live and (now - self._last_draw >= 0.1 or self.done >= self.total):
            self._last_draw = now
            self.stream.write("\r" + self.line())
            self.stream.flush()

    def line(self) -> str:
        """The bar as text."""
        filled = self.width * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (self.width - filled)
        stats = " ".join(f"{k} {v:.4f}" for k, v in self.metrics.items())
        line = f"{self.label} {self.done:>{len(str(self.total))}}/{self.total} [{bar}] {stats}"
        return f"{line}  {self.timing()}"

    def timing(self) -> str:
        """``8.4/s ETA 0:01`` while running, ``8.4/s in 0:02`` when done (steps per second)."""
        elapsed = time.monotonic() - self._start
        steps = self.done - self._first
        rate = steps / elapsed if elapsed > 0 else 0.0
        if self.done >= self.total or rate <= 0:
            return f"{rate:.1f}/s in {_clock(elapsed)}"
        return f"{rate:.1f}/s ETA {_clock((self.total - self.done) / rate)}"

    def close(self) -> None:
        if self.quiet:
            return
        self.stream.write(("\r" if self.live else "") + self.line() + "\n")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
