"""Measured parallelism (compute over busy time) and the bound's policy, as plain functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.backends.bound import follow_engine
from app.backends.parallelism import ParallelismMeter, Stay, advice, busy_time, parallelism


def serial(n: int, compute: float = 1.0, queued: int = 1) -> list[Stay]:
    """One slot, `queued` + 1 calls kept at it: each call waits for the one before."""
    return [Stay(end=(i + 1) * compute, at_engine=compute * min(i + 1, queued + 1), compute=compute) for i in range(n)]


def side_by_side(n: int, slots: int, compute: float = 1.0) -> list[Stay]:
    return [Stay(end=(i // slots + 1) * compute, at_engine=compute, compute=compute) for i in range(n)]


def test_busy_time_is_the_union() -> None:
    # [1,3] and [9,10]: cut at the earliest compute start (1); before it the first call only waited
    assert busy_time([Stay(2, 2, 1), Stay(3, 2, 1), Stay(10, 1, 1)]) == 3
    assert busy_time([]) == 0


def test_a_window_that_starts_mid_queue_still_measures_one() -> None:
    """The window's first calls waited while the engine computed calls older than the window."""
    meter = ParallelismMeter(8)
    for stay in serial(40, queued=3)[-8:]:
        meter.record(stay)
    assert meter.measured == pytest.approx(1.0)
    assert meter.engine_bound


def test_one_slot_measures_one_and_is_engine_bound() -> None:
    meter = ParallelismMeter(8)
    for stay in serial(8, queued=1):
        meter.record(stay)
    assert meter.measured == pytest.approx(1.0)
    assert meter.sent is not None
    assert meter.sent >= 1.5
    assert meter.engine_bound
    assert meter.serial


def test_four_slots_measure_four_and_are_not_engine_bound() -> None:
    meter = ParallelismMeter(8)
    for stay in side_by_side(8, slots=4):
        meter.record(stay)
    assert meter.measured == pytest.approx(4.0)
    assert not meter.engine_bound
    assert not meter.serial
    assert parallelism(side_by_side(8, slots=4)) == pytest.approx(4.0)
    assert parallelism([]) is None


def test_one_call_at_a_time_says_nothing_against_the_engine() -> None:
    meter = ParallelismMeter(8)
    for stay in serial(8, queued=0):  # we sent one at a time: measured 1, but the engine held nothing back
        meter.record(stay)
    assert meter.measured == pytest.approx(1.0)
    assert not meter.engine_bound
    assert not meter.serial


def test_too_few_calls_measure_nothing() -> None:
    meter = ParallelismMeter(8)
    for stay in serial(3):
        meter.record(stay)
    assert meter.measured is None
    assert not meter.serial


@pytest.mark.parametrize(
    ("current", "measured", "engine_bound", "slots", "expected"),
    [
        (4, None, False, None, 4),  # nothing measured: unchanged
        (4, 1.0, True, None, 2),  # one slot: measured + 1
        (2, 1.0, False, None, 2),  # one call at a time sent: never lowered by that
        (2, 2.0, False, None, 3),  # the engine computed all we sent: probe one higher
        (3, 3.1, False, None, 4),
        (4, 3.8, True, None, 4),  # never above the setting
        (4, 1.0, True, 4, 4),  # stated slots are known: kept
        (8, 1.0, True, 3, 3),
    ],
)
def test_follow_engine(
    current: int, measured: float | None, engine_bound: bool, slots: int | None, expected: int
) -> None:
    assert follow_engine(current, measured, engine_bound, slots, maximum=4 if current <= 4 else 8) == expected


def test_why_slow_quotes_the_advice_a_windows_user_reads() -> None:
    page = (Path(__file__).parents[2] / "docs" / "why-slow.md").read_text(encoding="utf-8")
    quoted = " ".join(line[2:] for line in page.splitlines() if line.startswith("> "))
    assert quoted == advice(1.0, 4, ollama=True)
