"""LiteLLM's own Python `Router` fanning lines out to Ollama hosts: what a user might script instead of
running the retranslate service. Spawned by `bench/run.py` (scenario 6) as its own process:

    python bench/litellm_router.py --calls calls.json --hosts http://127.0.0.1:A[,http://127.0.0.1:B]
        --parallel 8 --out result.json

`calls.json`: the service's own calls, read back from the fake (messages, max_tokens, temperature, the answer's
JSON schema), so both send the same work. The Router gets deploy/litellm.yaml's `router_settings` (the same
retries, cooldown and failover as the proxy), one `ollama_chat` deployment per host, and at most `--parallel`
calls in flight (an `asyncio.Semaphore`, as the service's bound). Each answer is parsed as `{"tr": ...}`.
Import, Router setup and a warm-up are excluded; the fakes are reset after the warm-up. Writes wall time,
CPU time (this process) and the outcome counts to `--out`.
"""

from __future__ import annotations

import os

# Offline: the bundled price list (else fetched from GitHub at import) and no telemetry.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_TELEMETRY", "False")
os.environ.setdefault("LITELLM_LOG", "ERROR")

import argparse
import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
MODEL = "qwen3:4b-instruct-2507-q4_K_M"
WARMUP = 20


def deploy_config() -> tuple[dict[str, Any], float]:
    """deploy/litellm.yaml's router settings and its per-attempt timeout on one host."""
    config = yaml.safe_load((ROOT / "deploy" / "litellm.yaml").read_text())
    return dict(config["router_settings"]), float(config["model_list"][0]["litellm_params"]["timeout"])


async def fan_out(router: Any, calls: list[dict[str, Any]], parallel: int) -> tuple[int, list[str]]:
    gate = asyncio.Semaphore(parallel)
    errors: list[str] = []

    async def one(call: dict[str, Any]) -> bool:
        async with gate:
            try:
                response = await router.acompletion(
                    model=MODEL,
                    messages=call["messages"],
                    max_tokens=call["max_tokens"],
                    temperature=call["temperature"],
                    response_format={
                        "type": "json_schema",
                        "json_schema": {"name": "translation", "schema": call["schema"], "strict": True},
                    },
                    reasoning_effort="none",  # LiteLLM sends Ollama `think: false`
                )
                answer = json.loads(response.choices[0].message.content)
                return isinstance(answer.get("tr"), str) and bool(answer["tr"])
            except Exception as exc:  # a user's script counts failures and goes on
                errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                return False

    outcomes = await asyncio.gather(*(one(c) for c in calls))
    return sum(outcomes), errors


def reset(hosts: list[str]) -> None:
    for host in hosts:
        request = urllib.request.Request(f"{host}/_fake/reset", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass


async def main_async(hosts: list[str], calls: list[dict[str, Any]], parallel: int) -> dict[str, Any]:
    import litellm
    from litellm.router import Router

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    settings, timeout = deploy_config()
    params = {"model": f"ollama_chat/{MODEL}", "timeout": timeout}
    router = Router(
        model_list=[{"model_name": MODEL, "litellm_params": {**params, "api_base": h}} for h in hosts],
        **settings,
    )
    await fan_out(router, calls[:WARMUP], parallel)  # lazy imports, connection pools
    reset(hosts)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    ok, errors = await fan_out(router, calls, parallel)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "ok": ok,
        "failed": len(calls) - ok,
        "first_error": errors[0] if errors else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", required=True)
    parser.add_argument("--hosts", required=True, help="comma-separated Ollama base URLs")
    parser.add_argument("--parallel", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    hosts = [h for h in args.hosts.split(",") if h]
    calls: list[dict[str, Any]] = json.loads(Path(args.calls).read_text())
    result = asyncio.run(main_async(hosts, calls, args.parallel))
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
