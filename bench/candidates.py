"""Candidates (issue 32) against one re-ask at a time: within-budget rate, calls and seconds per line.

    python bench/candidates.py [--lines N] [--out DIR] [--no-engine]

(a) The fake Ollama in seed mode (its own process, 4 slots, 50 ms per call): every answer is over budget
for 60 % of seeds at random. Two workloads: lines one request at a time (the editor's panel, a short
batch: the slots are free) and one batch of all lines (the slots are saturated: candidates cost calls).
(b) The embedded demo model (llama-server, 4 slots, SmolLM2-135M), one batch of short lines to English.
Each mode runs the same lines on the same service, only the request's `candidates` differs. Writes
DIR/candidates.json and prints the markdown table pasted into bench/RESULTS.md. Every process is stopped
at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from procs import FAKE_MODEL, ROOT, Fake, Processes
from workload import ENGINE_LINES, make_lines, make_tasks

SLOTS = 4
OVER_RATE = 0.6
LATENCY_S = 0.05
MODES = {"one re-ask at a time": 1, "candidates (k = 3)": 3}


def post(client: httpx.Client, url: str, tasks: list[dict[str, Any]], k: int) -> tuple[list[dict[str, Any]], float]:
    started = time.perf_counter()
    response = client.post(f"{url}/retranslate", json={"tasks": tasks, "candidates": k, "use_cache": False})
    wall = time.perf_counter() - started
    response.raise_for_status()
    return list(response.json()["results"]), wall


def row(label: str, mode: str, results: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    n = len(results)
    within = sum(1 for r in results if r["success"] and r["within_budget"] is not False)
    return {
        "workload": label,
        "mode": mode,
        "lines": n,
        "within_budget_rate": within / n,
        "calls_per_line": sum(r["attempts"] for r in results) / n,
        "answers_per_line": sum(r.get("candidates_considered", 0) for r in results) / n,
        "seconds_per_line": seconds / n,
        "mean_item_elapsed_s": sum(r["elapsed"] for r in results) / n,
    }


def fake_rows(procs: Processes, lines: int) -> list[dict[str, Any]]:
    fake = Fake(procs.fake_ollama({"parallel": SLOTS, "latency_s": LATENCY_S, "seed_over_rate": OVER_RATE}))
    service = procs.service(
        "service-candidates",
        {"RETRANSLATE_OLLAMA_URL": fake.url, "RETRANSLATE_MODEL": FAKE_MODEL, "RETRANSLATE_MAX_CONCURRENCY": "4"},
    )
    rows = []
    tasks = make_tasks(make_lines(lines, seed=32))
    with httpx.Client(timeout=600) as client:
        for mode, k in MODES.items():
            print(f"fake, one line per request: {mode}", file=sys.stderr)
            results, total = [], 0.0
            for task in tasks:
                got, wall = post(client, service.url, [task], k)
                results += got
                total += wall
            rows.append(row("fake, one line per request", mode, results, total))
        for mode, k in MODES.items():
            print(f"fake, one batch of {lines}: {mode}", file=sys.stderr)
            results, wall = post(client, service.url, tasks, k)
            rows.append(row(f"fake, one batch of {lines} lines", mode, results, wall))
    procs.stop(service)
    procs.stop(fake.managed)
    return rows


def engine_rows(procs: Processes) -> list[dict[str, Any]]:
    try:
        from app.backends.embedded import demo_model_path, llama_server_binary
        from app.settings import Settings

        binary = llama_server_binary()
        model = demo_model_path()
    except (ImportError, RuntimeError) as exc:
        print(f"real engine skipped: {exc}", file=sys.stderr)
        return []
    if model is None:
        print("real engine skipped: the demo model is not installed", file=sys.stderr)
        return []
    alias = model.name.removesuffix(".gguf")
    ctx_per_slot = int(Settings.model_fields["embedded_ctx_per_slot"].default)
    server = procs.llama_server(binary, model, alias, SLOTS, ctx_per_slot)
    service = procs.service(
        "service-candidates-engine",
        {
            "RETRANSLATE_BACKEND": "openai",
            "RETRANSLATE_OPENAI_BASE_URL": f"{server.url}/v1",
            "RETRANSLATE_MODEL": alias,
            "RETRANSLATE_MAX_CONCURRENCY": str(SLOTS),
            "RETRANSLATE_REQUEST_TIMEOUT_S": "120",
        },
    )
    tasks = make_tasks(list(ENGINE_LINES), prefix="line", target="en")
    rows = []
    with httpx.Client(timeout=900) as client:
        post(client, service.url, tasks, 1)  # warm-up: the prompts' shared prefix into the slots
        for mode, k in MODES.items():
            print(f"real engine: {mode}", file=sys.stderr)
            results, wall = post(client, service.url, tasks, k)
            rows.append(row(f"demo model, one batch of {len(tasks)} lines", mode, results, wall))
    procs.stop(service)
    procs.stop(server)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    out = [
        "| workload | mode | lines | within budget | calls per line | answers per line | seconds per line | "
        "mean item time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['workload']} | {r['mode']} | {r['lines']} | {r['within_budget_rate']:.1%} | "
            f"{r['calls_per_line']:.2f} | {r['answers_per_line']:.2f} | {r['seconds_per_line']:.3f} s | "
            f"{r['mean_item_elapsed_s']:.3f} s |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200, help="lines on the fake (default: 200)")
    parser.add_argument("--out", type=Path, default=Path("bench/out"), help="output directory")
    parser.add_argument("--no-engine", action="store_true", help="skip the real engine")
    args = parser.parse_args(argv)
    procs = Processes(ROOT / args.out / "logs-candidates")
    try:
        rows = fake_rows(procs, args.lines)
        if not args.no_engine:
            rows += engine_rows(procs)
    except KeyboardInterrupt:
        print("interrupted: every process this run started has been stopped", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "candidates.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
