"""How many calls an engine really computes at once, measured from the timings it reports (per backend).

Over the last calls (a rolling window), `measured` is the engine's compute time over the time it had work
(the union of the calls' stays at the engine), and `sent` is the number of our calls at the engine on average
over that same time. When we keep more calls there than it computes (`sent` well above `measured`), the
engine is the limit: the extra calls only queue inside it (an Ollama started with OLLAMA_NUM_PARALLEL=1).
The selector and /health read this; the bound (app/backends/bound.py) follows it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

# Fewer calls than this say nothing about parallelism yet.
MIN_CALLS = 4
# "Stays near 1": at most this many calls computed at once.
NEAR_ONE = 1.5
# The engine holds calls back when we keep at least this many more at it than it computes.
QUEUED_MARGIN = 0.5


@dataclass(frozen=True)
class Stay:
    """One call at the engine: when it ended, how long it was there, how long the engine computed for it."""

    end: float
    at_engine: float
    compute: float


def _spans(stays: Iterable[Stay]) -> list[tuple[float, float]]:
    """The stays' intervals, cut at the earliest compute start among them: before it, the first calls of a
    window were waiting while the engine computed calls older than the window (whose compute is not counted);
    that time would read as idle."""
    stays = list(stays)
    if not stays:
        return []
    origin = min(s.end - s.compute for s in stays)
    return sorted((max(s.end - s.at_engine, origin), s.end) for s in stays)


def busy_time(stays: Iterable[Stay]) -> float:
    """The length of the union of the stays' intervals: the time the engine had work."""
    spans = _spans(stays)
    total = 0.0
    start = end = None
    for a, b in spans:
        if end is None or a > end:
            if end is not None and start is not None:
                total += end - start
            start, end = a, b
        else:
            end = max(end, b)
    if end is not None and start is not None:
        total += end - start
    return total


def parallelism(stays: Iterable[Stay]) -> float | None:
    """Compute time over busy time (a batch's `engine_parallelism`); None without any reported compute."""
    stays = list(stays)
    busy = busy_time(stays)
    if not stays or busy <= 0:
        return None
    return sum(s.compute for s in stays) / busy


class ParallelismMeter:
    """The rolling measurement for one backend."""

    def __init__(self, window: int) -> None:
        self._stays: deque[Stay] = deque(maxlen=max(MIN_CALLS, window))
        self._last: tuple[float, float] | None = None

    def record(self, stay: Stay) -> None:
        self._stays.append(stay)
        self._last = self._measure()  # once per call: every reader below gets it for free

    @property
    def calls(self) -> int:
        return len(self._stays)

    def _ratios(self) -> tuple[float, float] | None:
        return self._last

    def _measure(self) -> tuple[float, float] | None:
        if len(self._stays) < MIN_CALLS:
            return None
        busy = busy_time(self._stays)
        if busy <= 0:
            return None
        compute = sum(s.compute for s in self._stays)
        sent = sum(end - start for start, end in _spans(self._stays))
        return compute / busy, sent / busy

    @property
    def measured(self) -> float | None:
        """Calls the engine computed at once over the window; None until enough calls reported timings."""
        ratios = self._ratios()
        return None if ratios is None else round(ratios[0], 2)

    @property
    def sent(self) -> float | None:
        """Our calls at the engine at once, on average over the same time."""
        ratios = self._ratios()
        return None if ratios is None else round(ratios[1], 2)

    @property
    def engine_bound(self) -> bool:
        """Whether the engine held calls back: we kept more at it than it computed."""
        ratios = self._ratios()
        return ratios is not None and ratios[1] - ratios[0] >= QUEUED_MARGIN

    @property
    def serial(self) -> bool:
        """It stays near one call at a time while we send more: the case worth telling the user about."""
        measured = self.measured
        return measured is not None and measured <= NEAR_ONE and self.engine_bound


def advice(measured: float, n: int, *, ollama: bool) -> str:
    """What the user reads on /health (and once in the log) when the engine stays near one call at a time
    while the service sends up to `n` (RETRANSLATE_MAX_CONCURRENCY)."""
    finding = (
        f"{'Ollama' if ollama else 'The engine'} computes about {measured:g} request at a time (measured) while "
        f"this service sends up to {n} (RETRANSLATE_MAX_CONCURRENCY): the other lines queue inside "
        f"{'Ollama' if ollama else 'it'}"
    )
    if not ollama:
        return (
            f"{finding}. Fix: give it {n} parallel slots (llama-server: `-np {n}`, with `-c` large enough for {n} x "
            f"the context per slot; vLLM and others: their own concurrency setting), or set "
            f"RETRANSLATE_MAX_CONCURRENCY to what it serves."
        )
    return (
        f"{finding} and a batch takes as long as one line after another. "
        f"Fix: set OLLAMA_NUM_PARALLEL={n} where Ollama runs, then restart Ollama. "
        f"Windows: quit Ollama from its tray icon (right-click > Quit Ollama), open 'Edit environment variables "
        f"for your account' (Start menu search), add the user variable OLLAMA_NUM_PARALLEL with the value {n}, "
        f"click OK, then start Ollama again from the Start menu. Linux (systemd): `sudo systemctl edit ollama`, "
        f'add the lines `[Service]` and `Environment="OLLAMA_NUM_PARALLEL={n}"`, then '
        f"`sudo systemctl daemon-reload && sudo systemctl restart ollama`. macOS: "
        f"`launchctl setenv OLLAMA_NUM_PARALLEL {n}`, then quit and reopen the Ollama app. Cost: the model's "
        f"context memory grows with parallel x context ({n} x the context length): if the GPU runs out of memory, "
        f"choose a smaller value and set RETRANSLATE_MAX_CONCURRENCY to the same. This service finds the new "
        f"slots by itself within a few batches; it needs no restart."
    )
