"""What the contenders send, and the contenders themselves.

- the service: one `POST /retranslate` with every line, as LocalClip-Editor sends a batch;
- tuned direct: one shared client, a semaphore of P, retries off, sending exactly the bodies the service
  sent (read back from the fake), so a ratio against it measures the service and not the prompt;
- upstream style: what `batch_retranslate_ollama.py` did: one `AsyncOpenAI(base_url=.../v1,
  api_key="ollama")` with the SDK's defaults and an unbounded `asyncio.gather` of one chat call per line;
- sequential: the tuned direct client, one call at a time.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import openai

# A mix of what the editor sends: codes and its Chinese language names.
TARGETS = ("韩语", "ja", "英语", "fr", "德语", "es", "印尼语", "ko", "日语", "en")
_UPSTREAM_NAMES = {
    "韩语": "韩语", "ko": "韩语", "ja": "日语", "日语": "日语", "英语": "英语", "en": "英语",
    "fr": "法语", "德语": "德语", "es": "西班牙语", "印尼语": "印尼语",
}  # fmt: skip

# Short, real subtitle-like lines for the real engine (zh -> en).
ENGINE_LINES = (
    "你好吗", "我们走吧", "今天天气很好", "我不知道", "快点过来", "这是我的朋友", "你在哪里",
    "别担心", "我饿了", "谢谢你的帮助", "他是个好人", "明天见", "我很高兴", "等一下", "太贵了", "小心点",
)  # fmt: skip

# Common ideographs: lines made from them look like Chinese text to the service and the fake.
_POOL = (
    "的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后"
    "小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长"
)


def make_lines(n: int, seed: int) -> list[str]:
    """`n` distinct lines of 4-12 ideographs (distinct: the service would otherwise merge duplicates)."""
    rnd = random.Random(seed)
    seen: set[str] = set()
    lines: list[str] = []
    while len(lines) < n:
        line = "".join(rnd.choice(_POOL) for _ in range(rnd.randint(4, 12)))
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


def make_tasks(lines: Sequence[str], prefix: str = "retrans", target: str | None = None) -> list[dict[str, str]]:
    return [
        {"task_id": f"{prefix}-{i}", "source": line, "target_language": target or TARGETS[i % len(TARGETS)]}
        for i, line in enumerate(lines)
    ]


def upstream_messages(task: dict[str, str]) -> list[dict[str, str]]:
    """The old script's prompt shape: one Chinese user message with the rules and the line."""
    lang = _UPSTREAM_NAMES.get(task["target_language"], task["target_language"])
    prompt = (
        f"你是配音字幕压缩专家。请把下面的中文字幕翻译成{lang}，要尽量口语化、简短，保持原意，不要解释。"
        '韩语里不能有汉字，日语尽量用假名。只输出 JSON：{"tr": "译文"}\n\n'
        f"原文：{task['source']}"
    )
    return [{"role": "user", "content": prompt}]


@dataclass
class Run:
    """One contender's pass over a workload."""

    wall_s: float
    ok: int
    failed: int
    calls: int | None = None  # backend calls, when known (from the fake, or the service's `attempts`)
    first_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (q in [0, 1])."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def _bounded(coro: Awaitable[Run], limit_s: float) -> Run:
    async with asyncio.timeout(limit_s):
        return await coro


# --- the service ---------------------------------------------------------------------------------


async def service_batch(url: str, tasks: Sequence[dict[str, str]], limit_s: float, **fields: Any) -> Run:
    """One `/retranslate` request with every line; wall time as the client sees it."""

    async def go() -> Run:
        async with httpx.AsyncClient(timeout=httpx.Timeout(limit_s, connect=5.0)) as client:
            started = time.perf_counter()
            response = await client.post(f"{url}/retranslate", json={"tasks": list(tasks), **fields})
            wall = time.perf_counter() - started
        response.raise_for_status()
        body = response.json()
        results = body["results"]
        failed = [r for r in results if not r["success"]]
        return Run(
            wall_s=wall,
            ok=len(results) - len(failed),
            failed=len(failed),
            calls=sum(int(r["attempts"]) for r in results),
            first_error=failed[0]["error"] if failed else None,
            extra={"cached": sum(1 for r in results if r.get("cached"))},
        )

    return await _bounded(go(), limit_s)


# --- direct clients ------------------------------------------------------------------------------


async def direct_native(url: str, bodies: Sequence[dict[str, Any]], parallel: int, limit_s: float) -> Run:
    """Tuned direct on Ollama's native /api/chat, with aiohttp like the service: one shared session, a
    pool sized to the bound, at most `parallel` calls in flight, no retries."""

    async def go() -> Run:
        gate = asyncio.Semaphore(parallel)
        errors: list[str] = []
        connector = aiohttp.TCPConnector(limit=parallel + 4, limit_per_host=parallel + 4)
        timeout = aiohttp.ClientTimeout(total=limit_s, sock_connect=5.0)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def one(body: dict[str, Any]) -> bool:
                async with gate:
                    try:
                        async with session.post(f"{url}/api/chat", json=body) as response:
                            response.raise_for_status()
                            json.loads(await response.read())
                        return True
                    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                        errors.append(f"{type(exc).__name__}: {exc}")
                        return False

            started = time.perf_counter()
            outcomes = await asyncio.gather(*(one(b) for b in bodies))
            wall = time.perf_counter() - started
        ok = sum(outcomes)
        return Run(wall, ok, len(bodies) - ok, calls=len(bodies), first_error=errors[0] if errors else None)

    return await _bounded(go(), limit_s)


@dataclass(frozen=True)
class OpenAICall:
    model: str
    messages: list[dict[str, str]]
    max_tokens: int | None
    temperature: float


def _openai_kwargs(call: OpenAICall) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"model": call.model, "messages": call.messages, "temperature": call.temperature}
    if call.max_tokens is not None:
        kwargs["max_tokens"] = call.max_tokens
    return kwargs


async def _openai_gather(
    client: openai.AsyncOpenAI, calls: Sequence[OpenAICall], parallel: int | None, limit_s: float
) -> Run:
    gate = asyncio.Semaphore(parallel) if parallel else None
    errors: list[str] = []

    async def call_once(call: OpenAICall) -> bool:
        try:
            completion = await client.chat.completions.create(**_openai_kwargs(call))
            return bool(completion.choices)
        except openai.APIError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            return False

    async def one(call: OpenAICall) -> bool:
        if gate is None:
            return await call_once(call)
        async with gate:
            return await call_once(call)

    async def go() -> Run:
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(one(c) for c in calls))
        wall = time.perf_counter() - started
        ok = sum(outcomes)
        return Run(wall, ok, len(calls) - ok, first_error=errors[0] if errors else None)

    try:
        return await _bounded(go(), limit_s)
    finally:
        await client.close()


async def upstream_style(v1_url: str, calls: Sequence[OpenAICall], limit_s: float) -> Run:
    """The old script: the SDK's defaults (2 retries, 600 s timeout, its own pool) and no bound."""
    client = openai.AsyncOpenAI(base_url=v1_url, api_key="ollama")
    return await _openai_gather(client, calls, None, limit_s)


async def direct_openai(v1_url: str, calls: Sequence[OpenAICall], parallel: int, limit_s: float) -> Run:
    """Tuned direct on a /v1 server with the SDK the service uses there: shared client, pool sized to the
    bound, semaphore of `parallel`, retries off."""
    import httpx2  # openai 3.x runs on httpx2, tuned through the SDK's own client class

    limits = httpx2.Limits(max_connections=parallel + 4, max_keepalive_connections=parallel + 4)
    client = openai.AsyncOpenAI(
        base_url=v1_url,
        api_key="not-needed",
        max_retries=0,
        timeout=httpx2.Timeout(limit_s, connect=5.0),
        http_client=openai.DefaultAsyncHttpxClient(limits=limits),
    )
    return await _openai_gather(client, calls, parallel, limit_s)


# --- per-task latency --------------------------------------------------------------------------------


async def single_line_latencies(
    service_url: str,
    fake_url: str,
    tasks: Sequence[dict[str, str]],
    bodies: Sequence[dict[str, Any]],
    limit_s: float,
    tick: Callable[[], None] | None = None,
) -> tuple[list[float], list[float]]:
    """One line at a time, alternating: through the service (`/retranslate` with one task) and directly
    (`/api/chat` with the body the service sent for that line). Seconds per call, each list."""

    async def go() -> tuple[list[float], list[float]]:
        via_service: list[float] = []
        direct: list[float] = []
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        timeout = httpx.Timeout(30.0, connect=5.0)
        async with (
            httpx.AsyncClient(limits=limits, timeout=timeout) as to_service,
            httpx.AsyncClient(limits=limits, timeout=timeout) as to_backend,
        ):
            for i, (task, body) in enumerate(zip(tasks, bodies, strict=True)):
                order = ("service", "direct") if i % 2 == 0 else ("direct", "service")
                for who in order:
                    started = time.perf_counter()
                    if who == "service":
                        response = await to_service.post(f"{service_url}/retranslate", json={"tasks": [task]})
                    else:
                        response = await to_backend.post(f"{fake_url}/api/chat", json=body)
                    response.raise_for_status()
                    response.json()
                    (via_service if who == "service" else direct).append(time.perf_counter() - started)
                if tick is not None:
                    tick()
        return via_service, direct

    async with asyncio.timeout(limit_s):
        return await go()
