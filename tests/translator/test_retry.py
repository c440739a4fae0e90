"""The retry policy: which kinds are retried, Retry-After honoured and capped, backoff jitter bounds."""

from __future__ import annotations

import pytest

from app.errors import POLICY, BackendCallError, ErrorKind
from app.translator.retry import RetryPolicy


def policy(**overrides: object) -> RetryPolicy:
    values: dict = {"max_retries": 2, "backoff_s": 0.5, "backoff_max_s": 8.0, **overrides}
    return RetryPolicy(**values)


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_only_kinds_the_table_marks_retryable_are_retried(kind: ErrorKind) -> None:
    error = BackendCallError(kind, "x")
    assert policy().should_retry(error, 0) is POLICY[kind].retry


def test_retries_stop_at_max_retries() -> None:
    error = BackendCallError(ErrorKind.SERVER, "500")
    p = policy(max_retries=2)
    assert p.should_retry(error, 0)
    assert p.should_retry(error, 1)
    assert not p.should_retry(error, 2)


def test_retry_after_is_honoured_and_capped() -> None:
    p = policy(backoff_max_s=8.0)
    assert p.backoff(1, 3.0) == 3.0
    assert p.backoff(1, 3600.0) == 8.0  # a server saying "an hour" must not hold the line that long
    assert p.backoff(1, 0.0) == 0.0


def test_backoff_doubles_with_jitter_within_half_to_one_and_a_half_times() -> None:
    lows = policy(uniform=lambda a, b: a)
    highs = policy(uniform=lambda a, b: b)
    for retry, base in ((1, 0.5), (2, 1.0), (3, 2.0)):
        assert lows.backoff(retry, None) == base / 2
        assert highs.backoff(retry, None) == base * 1.5
    assert highs.backoff(6, None) == 8.0  # 16 * 1.5 capped


def test_real_jitter_stays_in_bounds() -> None:
    p = policy()
    values = [p.backoff(2, None) for _ in range(500)]
    assert all(0.5 <= v <= 1.5 for v in values)
    assert len(set(values)) > 100  # jittered, not constant
