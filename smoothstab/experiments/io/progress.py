"""Progress bars on stderr with rate and time left, drawn by tqdm::

    model 0 epoch 3/30:  57%|#####7    | 12/21 [00:01<00:01,  8.40it/s, loss=0.3120, acc=0.9140]

On a terminal the bar redraws in place (tqdm, at most ten times a second); elsewhere (a log
file, a pipe) it writes one line of the same format when it closes, so logs get the rate and
the time taken without a stream of carriage returns. Quiet mode -- ``quiet=True`` or the
environment variable ``CI=true`` -- writes nothing; callers print their one final line with
:func:`say`.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from tqdm import tqdm


def is_quiet(quiet: bool = False) -> bool:
    """``quiet``, or running under CI (``CI`` set to true/1/yes)."""
    return quiet or os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def say(line: str, stream: TextIO | None = None) -> None:
    """One line on stderr (shown in quiet mode too)."""
    print(line, file=stream or sys.stderr, flush=True)


def postfix_value(v: object) -> str:
    """A metric as a bar shows it: an integer (an index, a count) as an integer, a float with 4
    decimals, anything else as it prints."""
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


LOG_EVERY = 10.0  # seconds between lines when the stream is a log or a pipe


class Progress:
    """A bar for ``total`` steps; ``update(loss=..., acc=...)`` after each step.

    On a terminal it is tqdm's bar, redrawn in place. In a log or a pipe it writes tqdm's line
    (no carriage returns) at most every ``LOG_EVERY`` seconds while steps finish, and once when
    it closes, so a long stage shows it is alive. ``start``: steps already done by an earlier
    (resumed) run; the rate counts this run's only.
    """

    def __init__(
        self,
        total: int,
        label: str,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        start: int = 0,
        unit: str = "it",
    ) -> None:
        self.total, self.label, self.done = total, label, start
        self.unit = unit  # "B": bytes, shown scaled (kB, MB, ...)
        self.stream = stream or sys.stderr
        self.quiet = is_quiet(quiet)
        self.metrics: dict[str, object] = {}
        self._start, self._first = time.monotonic(), start
        self._logged = self._start
        self._bar = None
        if not self.quiet and self.stream.isatty():
            self._bar = tqdm(
                total=total,
                initial=start,
                desc=label,
                file=self.stream,
                mininterval=0.1,
                dynamic_ncols=True,
                ascii=True,
                unit=unit,
                unit_scale=unit == "B",
            )

    def update(self, n: int = 1, **metrics: object) -> None:
        self.done += n
        self.metrics.update(metrics)
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(n)
        elif not self.quiet and self.done < self.total:
            now = time.monotonic()
            if now - self._logged >= LOG_EVERY:
                self._logged = now
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    def _postfix(self) -> str:
        return ", ".join(f"{k}={postfix_value(v)}" for k, v in self.metrics.items())

    def line(self) -> str:
        """The bar as one line of text (tqdm's format: steps, elapsed<left, rate, metrics)."""
        return tqdm.format_meter(
            self.done,
            self.total,
            time.monotonic() - self._start,
            prefix=self.label,
            postfix=self._postfix() or None,
            initial=self._first,
            ascii=True,
            ncols=100,
            unit=self.unit,
            unit_scale=self.unit == "B",
        )

    def close(self) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
