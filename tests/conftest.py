"""Session-wide servers: one fake Ollama and services built on demand (one per distinct settings)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.settings import Settings
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer

# Fast retries: the tests check behaviour, not waiting. No cache by default: services are shared across
# tests, and a test counting backend calls must not be served an earlier test's answer. The cache tests
# turn it on.
FAST = {"retry_backoff_s": 0.01, "retry_backoff_max_s": 0.05, "readiness_ttl_s": 0.0, "cache_size": 0}


def make_settings(**overrides: Any) -> Settings:
    """Settings that ignore the developer's .env and environment-specific autostart."""
    values: dict[str, Any] = {"autostart_ollama": False, "log_level": "WARNING", **FAST, **overrides}
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeOllama]:
    server = FakeOllama(parallel=4).start()
    yield server
    server.stop()


@pytest.fixture
def fake_clean(fake: FakeOllama) -> FakeOllama:
    """The session's fake Ollama, reset to its defaults (4 slots, no latency, json answers)."""
    fake.reset(config=True)
    fake.configure(parallel=4)
    return fake


ServiceFactory = Callable[..., ServiceServer]


@pytest.fixture(scope="session")
def service_factory(fake: FakeOllama) -> Iterator[ServiceFactory]:
    """`service_factory(**settings)`: a running service against the session's fake Ollama, started once
    per distinct set of settings and stopped at the end of the session."""
    running: dict[str, ServiceServer] = {}

    def get(**overrides: Any) -> ServiceServer:
        overrides.setdefault("ollama_url", fake.url)
        key = repr(sorted(overrides.items()))
        if key not in running:
            running[key] = ServiceServer(make_settings(**overrides)).start()
        return running[key]

    yield get
    for server in running.values():
        server.stop()


@pytest.fixture
def service(service_factory: ServiceFactory, fake_clean: FakeOllama) -> ServiceServer:
    """The default service (max_concurrency 4) against a freshly reset fake."""
    return service_factory()
