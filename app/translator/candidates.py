"""Candidates: when a line's answer misses its budget or a rule, ask k answers at once and keep the best.

Length-controlled translation work agrees that choosing among several outputs is the strongest lever on
length compliance (N-best selection; several sampled LLM outputs). Each candidate gets its own seed, so the
engine really samples k different answers, and all but the first a temperature above 0, so that a
deterministic configuration (temperature 0) still varies. The translator calls this module; the picking
rule lives only here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from app.dubbing import Fitness

# The temperature of every candidate but the first (which keeps the configured one): enough spread for k
# answers to differ in length, not so much that a small model wanders off the line.
CANDIDATE_TEMPERATURE = 0.8
# Seeds stay in the signed 32-bit range that every engine accepts (llama.cpp reads -1 as "random").
_SEED_SPACE = 2**31 - 1


class Seeds:
    """The seeds of one line's calls: a stable start from the line's key, then one more per call, so that
    no seed is sent twice for a line (retries and re-asks included) and a rerun asks the same seeds."""

    __slots__ = ("_base", "sent")

    def __init__(self, key: str) -> None:
        self._base = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16)
        self.sent = 0

    def next(self) -> int:
        seed = (self._base + self.sent) % _SEED_SPACE
        self.sent += 1
        return seed


def temperatures(k: int, configured: float) -> list[float]:
    """The temperature of each of k candidates: the configured one first, the others above 0."""
    return [configured] + [max(configured, CANDIDATE_TEMPERATURE)] * (k - 1)


def rank(fit: Fitness) -> tuple[int, int, int]:
    """Smaller is better: every rule kept, then within budget, then closest to the budget from below (the
    most complete translation that fits); over budget, the least over."""
    within = fit.within_budget is not False
    if fit.length_budget is None:
        distance = 0  # no budget: nothing to be close to, the first one wins
    elif within:
        distance = fit.length_budget - fit.length
    else:
        distance = fit.length - fit.length_budget
    return (len(fit.hard_failures), 0 if within else 1, distance)


def pick(fits: Sequence[Fitness]) -> int:
    """The index of the candidate to keep; ties go to the first."""
    if not fits:
        raise ValueError("no candidates to pick from")
    return min(range(len(fits)), key=lambda i: rank(fits[i]))
