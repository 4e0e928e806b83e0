"""Progress lines of long steps (cryoavae.core.progress), on a clock the test moves: a line at
each tenth and whenever the interval has passed, the time left from the mean rate, one last line
with the total time."""

import logging

import pytest

from cryoavae.core.progress import Progress, duration

LOGGER = "cryoavae.test_progress"


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def progress(total, clock, every_s=30.0) -> Progress:
    return Progress(total, "matching particles", logging.getLogger(LOGGER), every_s, clock=clock)


def test_a_slow_step_logs_once_per_interval_and_at_each_tenth(clock, caplog):
    """1000 items, one every 10 s: a tenth takes 1000 s, so lines come every 30 s between the
    tenths, never more than 30 s apart, never less but where a tenth is passed."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    work = progress(1000, clock)
    logged_at = []  # (seconds since the start, items done)
    for _ in range(250):
        clock.now += 10.0
        before = len(lines(caplog))
        work.advance(1)
        if len(lines(caplog)) > before:
            logged_at.append((clock.now - work.started, work.count))
    assert logged_at[:4] == [(30.0, 3), (60.0, 6), (90.0, 9), (120.0, 12)]
    gaps = [(b[0] - a[0], b[1]) for a, b in zip(logged_at, logged_at[1:], strict=False)]
    assert all(gap <= 30.0 for gap, _ in gaps)
    assert [count for gap, count in gaps if gap < 30.0] == [100, 200]  # the tenths
    logged = " ".join(lines(caplog))
    assert (
        "matching particles: 10% (100/1000), 0.1/s, 16 min 40 s elapsed, about 2 h 30 min left"
        in logged
    )
    assert "matching particles: 20% (200/1000)" in logged


def test_a_quick_step_logs_each_tenth_once_and_then_done(clock, caplog):
    """Batches of 7 of 100 items, 1 s each: no interval passes; a line as each tenth is passed
    (the batch that crosses it), and the last batch's line says done with the total time."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    work = progress(100, clock)
    for _ in range(0, 100, 7):
        clock.now += 1.0
        work.advance(min(7, 100 - work.count))
    logged = lines(caplog)
    percents = [int(line.split(": ")[1].split("%")[0]) for line in logged[:-1]]
    assert percents == [14, 21, 35, 42, 56, 63, 70, 84, 91]  # the first count past each tenth
    assert logged[-1] == "matching particles: done, 100 in 15 s (6.67/s)"
    work.advance(0)
    work.finish()
    assert len(lines(caplog)) == len(logged)  # done once


def test_the_time_left_is_the_rest_at_the_mean_rate(clock, caplog):
    """250 of 1000 items in 50 s: 5 items/s, 750 to go, 150 s (2 min 30 s) left."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    work = progress(1000, clock, every_s=3600)
    clock.now += 50.0
    work.advance(250)
    assert work.seconds_left(clock.now) == pytest.approx(150.0)
    assert lines(caplog) == [
        "matching particles: 25% (250/1000), 5/s, 50 s elapsed, about 2 min 30 s left"
    ]


def test_work_that_ends_short_of_its_total_says_done_on_leaving_its_block(clock, caplog):
    """Training on several processes leaves out a batch smaller than the world: the count never
    reaches the total, and the block's end gives the last line. A failed block does not."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    with progress(10, clock, every_s=3600) as work:
        clock.now += 4.0
        work.advance(8)
    assert lines(caplog)[-1] == "matching particles: done, 8 in 4 s (2/s)"
    caplog.clear()
    with pytest.raises(RuntimeError), progress(10, clock) as work:
        work.advance(3)
        raise RuntimeError
    assert not any("done" in line for line in lines(caplog))


def test_nothing_to_do_logs_nothing(clock, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with progress(0, clock) as work:
        work.advance(0)
    assert lines(caplog) == []


def test_durations_read_as_a_person_reads_them():
    assert [duration(s) for s in (0.4, 42, 185, 7620, float("inf"))] == [
        "0 s",
        "42 s",
        "3 min 05 s",
        "2 h 07 min",
        "?",
    ]
