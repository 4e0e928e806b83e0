"""Progress of a long step, as plain lines in the run log: how far, how fast, how long to go.

Training, encoding and template matching can run for hours on a large particle set; without a
line now and then a rule's log cannot tell a slow job from a hung one, nor when it will end.
:class:`Progress` logs at each tenth of the work and whenever ``every_s`` seconds have passed
since its last line, whichever comes first, and a last line with the total time. Lines go through
:mod:`logging`, so the rule's log file gets the same plain lines as the terminal (no carriage
returns); a job that is quick logs at most its ten steps.

It is called once per batch, never per item: :meth:`Progress.advance` adds a count and reads the
clock, and formats a line only when one is due, so it costs nothing measurable beside a batch.

Example::

    with Progress(len(table), "matching particles", log) as progress:
        for rows in batches:
            ...
            progress.advance(len(rows))
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

__all__ = ["Progress", "duration"]


class Progress:
    """Counts ``total`` items of the work ``what`` as batches finish and logs to ``logger``:
    ``what: 40% (400/1000), 12.5/s, 32 s elapsed, about 48 s left`` at each tenth and at least
    every ``every_s`` seconds while batches keep coming, then ``what: done, 1000 in 1 min 20 s
    (12.5/s)``. The rate is over the wall time since the object was made, so the time left
    includes whatever else each batch waits for (reading images, validation between epochs).
    ``clock`` (seconds, monotonic) is there for tests. Nothing is logged for ``total`` 0."""

    def __init__(
        self,
        total: int,
        what: str,
        logger: logging.Logger,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total = max(int(total), 0)
        self.what = what
        self.logger = logger
        self.every_s = float(every_s)
        self.clock = clock
        self.count = 0
        self.started = clock()
        self.finished = self.total == 0
        self._last_line = self.started
        self._next_count = self._tenth_after(0)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:  # a failed step ends with its error, not with "done"
            self.finish()

    def advance(self, n: int = 1) -> None:
        """``n`` more items are done; logs a line when one is due."""
        self.count += n
        if self.finished:
            return
        if self.count >= self.total:
            self.finish()
            return
        now = self.clock()
        if self.count >= self._next_count or now - self._last_line >= self.every_s:
            self._report(now)

    def finish(self) -> None:
        """The last line, once: the count done and the total time (called when the count reaches
        ``total``, and on leaving a ``with`` block, for work that ends short of its total)."""
        if self.finished:
            return
        self.finished = True
        seconds = self.clock() - self.started
        self.logger.info(
            "%s: done, %d in %s (%s/s)",
            *(self.what, self.count, duration(seconds), _rate(self.count, seconds)),
        )

    def seconds_left(self, now: float) -> float:
        """The time the rest of the work takes at the mean rate so far (inf before any)."""
        if self.count <= 0:
            return math.inf
        return (now - self.started) * (self.total - self.count) / self.count

    def _report(self, now: float) -> None:
        elapsed = now - self.started
        self.logger.info(
            "%s: %d%% (%d/%d), %s/s, %s elapsed, about %s left",
            self.what,
            100 * self.count // self.total,
            self.count,
            self.total,
            _rate(self.count, elapsed),
            duration(elapsed),
            duration(self.seconds_left(now)),
        )
        self._last_line = now
        self._next_count = self._tenth_after(self.count)

    def _tenth_after(self, count: int) -> int:
        """The smallest count past the next tenth of the total after ``count``."""
        if self.total == 0:
            return 0
        tenth = count * 10 // self.total + 1
        return -(-self.total * tenth // 10)  # ceil(total * tenth / 10)


def duration(seconds: float) -> str:
    """``seconds`` as a person reads it: ``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    if not math.isfinite(seconds):
        return "?"
    whole = round(max(seconds, 0.0))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _rate(count: int, seconds: float) -> str:
    """Items per second, to three figures (whole numbers from 100 on); ``?`` for no time."""
    if seconds <= 0:
        return "?"
    rate = count / seconds
    return f"{rate:.0f}" if rate >= 100 else f"{rate:.3g}"
