"""Prometheus metrics: HTTP metrics from prometheus-fastapi-instrumentator plus our own `retranslate_*`.

One registry per app (not the process-global one), so that several apps in one process (tests, the CLI)
never collide, and `/metrics` shows exactly this app's numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_fastapi_instrumentator import Instrumentator


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.tasks = Counter(
            "retranslate_tasks", "Items finished, by outcome (succeeded, failed, cached).", ["outcome"], registry=r
        )
        self.backend_calls = Counter(
            "retranslate_backend_calls",
            "Backend calls, by result: ok, or the error kind (timeout, connection, busy, server, ...).",
            ["status"],
            registry=r,
        )
        self.retries = Counter("retranslate_retries", "Retries after a transient failure.", registry=r)
        self.reasks = Counter("retranslate_reasks", "Follow-up asks after an answer missed a rule.", registry=r)
        self.cache_hits = Counter("retranslate_cache_hits", "Items served from the cache.", registry=r)
        self.dedup_joins = Counter(
            "retranslate_dedup_joins", "Items that joined an identical item's call in flight.", registry=r
        )
        self.in_flight = Gauge("retranslate_backend_in_flight", "Backend calls in flight now.", registry=r)
        self.backend_latency = Histogram(
            "retranslate_backend_latency_seconds",
            "Duration of one backend call.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.item_timings = Histogram(
            "retranslate_item_timing_seconds",
            "Where an item's time went, by part (service_wait, engine_wait, load, prompt, generate); an item "
            "counts in a part only where it was measured.",
            ["part"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )

    def instrument(self, app: FastAPI, dependencies: Sequence[Any]) -> None:
        """HTTP request metrics for every route, and GET /metrics (behind the API key when one is set:
        Prometheus sends it as a bearer token, `authorization: {credentials: ...}` in a scrape config)."""
        Instrumentator(registry=self.registry, excluded_handlers=["/metrics"]).instrument(app).expose(
            app,
            include_in_schema=True,
            tags=["operations"],
            summary="Prometheus metrics (text exposition format)",
            response_class=PlainTextResponse,
            dependencies=dependencies,
            responses={
                200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
                401: {"description": "RETRANSLATE_API_KEY is set and the request did not carry it."},
            },
        )
