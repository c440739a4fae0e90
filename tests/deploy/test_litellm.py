"""The service behind the real LiteLLM proxy (deploy/litellm.yaml) in front of two fake Ollama hosts.

Everything talks HTTP on 127.0.0.1: the service (uvicorn in a thread) -> `litellm --config` (its own
process, the pinned release from the `test` extra) -> two fake Ollama hosts (in this process, each on its
own port). A host "dies" by `FakeOllama.stop()`: its listening socket closes and every open connection is
shut down, so what it was working on is never answered (recorded by the fake with no status).

The proxy's config is deploy/litellm.yaml with only each host's `api_base` replaced, so the router settings
tested are the ones shipped.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import make_settings
from tests.helpers import CHAT_PATHS, hanging_calls, wait_ready, wait_until
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer, free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_CONFIG = ROOT / "deploy" / "litellm.yaml"
LITELLM = Path(sys.executable).with_name("litellm")
# scripts/test.sh installs the `test` extra (which pins litellm[proxy]) and sets this, so CI fails rather
# than skips when the proxy is missing.
REQUIRE_LITELLM = os.environ.get("RETRANSLATE_TEST_REQUIRE_LITELLM") == "1"
MASTER_KEY = "sk-retranslate-test-only"  # a test process's key: the deploy files read theirs from the environment
STARTUP_S = 180.0  # importing litellm alone takes 6-14 s on a 2-core machine; startup 15-30 s
LINES = 40
SLOTS = 4  # per host
LATENCY_S = 0.2


def _tasks(prefix: str) -> list[dict[str, str]]:
    # Distinct sources (identical ones would be merged into one backend call by the service).
    return [
        {"task_id": f"{prefix}-{i}", "source": f"第{i}句：{prefix}我们走吧", "target_language": "en"}
        for i in range(LINES)
    ]


class Host:
    """One Ollama host on a fixed port (the proxy's config names it), that can die and come back."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.fake: FakeOllama | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> FakeOllama:
        if self.fake is None:
            self.fake = FakeOllama(port=self.port, latency_s=LATENCY_S, parallel=SLOTS).start()
        self.fake.reset()
        return self.fake

    def kill(self) -> dict[str, Any]:
        """Stop the host; return its records as they were when it died."""
        assert self.fake is not None, f"{self.name} is not running"
        fake, self.fake = self.fake, None
        fake.stop()
        return fake.stats()

    def chats(self) -> list[dict[str, Any]]:
        if self.fake is None:
            return []
        return [r for r in self.fake.stats()["requests"] if r["path"] in CHAT_PATHS]


def _chats(stats: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in stats["requests"] if r["path"] in CHAT_PATHS]


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[Host, Host]]:
    pair = (Host("host-a"), Host("host-b"))
    for host in pair:
        host.up()
    yield pair
    for host in pair:
        if host.fake is not None:
            host.kill()


def _proxy_config(hosts: tuple[Host, Host]) -> dict[str, Any]:
    config = yaml.safe_load(DEPLOY_CONFIG.read_text())
    entries = config["model_list"]
    assert len(entries) == len(hosts), "deploy/litellm.yaml should list one entry per host (two)"
    for entry, host in zip(entries, hosts, strict=True):
        entry["litellm_params"]["api_base"] = host.url
    return dict(config)


def _log_tail(path: Path, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@pytest.fixture(scope="module")
def proxy(hosts: tuple[Host, Host], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real LiteLLM proxy on a free loopback port; its /v1 URL."""
    if not LITELLM.exists():
        reason = f"LiteLLM's proxy is not installed next to {sys.executable}: pip install 'litellm[proxy]==1.108.7'"
        if REQUIRE_LITELLM:
            pytest.fail(f"the LiteLLM proxy is required (RETRANSLATE_TEST_REQUIRE_LITELLM=1) but missing: {reason}")
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("litellm")
    config_path = work / "litellm.yaml"
    config_path.write_text(yaml.safe_dump(_proxy_config(hosts), sort_keys=False))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "DATABASE_URL", "OPENAI_"))}
    env.update(
        {
            "HOME": str(work),  # it writes caches under HOME
            "LITELLM_MASTER_KEY": MASTER_KEY,
            # Offline: the bundled price list (else fetched from GitHub) and no probe of localhost:11434.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "OLLAMA_API_BASE": hosts[0].url,
            "LITELLM_LOG": "ERROR",
            "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
            "LITELLM_TELEMETRY": "False",
        }
    )
    log_path = work / "litellm.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(LITELLM), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stopped as a group below: it is ours alone
        )
    url = f"http://127.0.0.1:{port}"

    def live() -> bool:
        if proc.poll() is not None:
            return True  # stop waiting: reported below
        try:
            return httpx.get(f"{url}/health/liveliness", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        ready = wait_until(live, STARTUP_S, interval_s=0.25)
        assert proc.poll() is None, f"litellm exited with {proc.returncode}:\n{_log_tail(log_path)}"
        assert ready, f"litellm was not live within {STARTUP_S:g} s:\n{_log_tail(log_path)}"
        yield f"{url}/v1"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.fixture(scope="module")
def service(proxy: str) -> Iterator[ServiceServer]:
    settings = make_settings(
        backend="openai",
        openai_base_url=proxy,
        openai_api_key=MASTER_KEY,
        model="qwen3:4b-instruct-2507-q4_K_M",  # the proxy's model_name
        max_concurrency=2 * SLOTS,  # the total of the hosts' slots (README, "More than one machine")
    )
    with ServiceServer(settings) as server:
        wait_ready(server.url, 60)
        yield server


def _retranslate(service: ServiceServer, tasks: list[dict[str, str]]) -> list[dict[str, Any]]:
    with service.client(timeout=120) as client:
        response = client.post("/retranslate", json={"tasks": tasks})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    assert [r["task_id"] for r in results] == [t["task_id"] for t in tasks]
    return results


def _failed(results: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    return [(r["task_id"], r["error_code"], r.get("error")) for r in results if not r["success"]]


def _breaker(service: ServiceServer) -> dict[str, Any]:
    with service.client() as client:
        health = client.get("/health").json()
    breaker: dict[str, Any] = health["backend"]["openai"]["breaker"]
    return breaker


def test_a_batch_is_spread_over_both_hosts(service: ServiceServer, hosts: tuple[Host, Host]) -> None:
    for host in hosts:
        host.up()
    results = _retranslate(service, _tasks("spread"))
    assert _failed(results) == []
    assert all(r["translation"] for r in results)
    served = {host.name: len(host.chats()) for host in hosts}
    assert all(n >= 1 for n in served.values()), served
    assert sum(served.values()) >= LINES


def test_a_host_killed_mid_batch_loses_no_line(service: ServiceServer, hosts: tuple[Host, Host]) -> None:
    for host in hosts:
        host.up()
    survivor, victim = hosts

    def victim_answered_some() -> bool:
        return sum(1 for r in victim.chats() if r["status"] is not None) >= 2

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        batch = pool.submit(_retranslate, service, _tasks("kill"))
        assert wait_until(victim_answered_some, 60), "the victim host never got work"
        # From now on the victim takes lines and never answers them, so the kill is certain to cut one (a
        # line merely "in progress" could be answered between the look and the kill).
        held = victim.fake
        assert held is not None
        held.configure(failures=[{"mode": "hang", "count": -1}])
        assert wait_until(lambda: hanging_calls(held) >= 1, 60), "the victim host got no line after its first answers"
        assert not batch.done(), "the batch ended before the host could be killed"
        at_death = victim.kill()
        served_before = len(survivor.chats())
        results = batch.result(timeout=120)

    cut = [r for r in _chats(at_death) if r["status"] is None]
    assert cut, "the host died with nothing in flight: the test proved nothing"
    assert _failed(results) == []
    assert all(r["translation"] for r in results)
    # The proxy failed the cut lines over inside the service's one call: the service did not retry.
    assert [r["attempts"] for r in results] == [1] * LINES, [(r["task_id"], r["attempts"]) for r in results]
    # The lines the dead host had, and every line after its death, were answered by the survivor.
    assert len(survivor.chats()) > served_before


def test_the_proxy_fails_over_and_the_service_neither_retries_nor_trips(
    service: ServiceServer, hosts: tuple[Host, Host]
) -> None:
    survivor, dead = hosts
    survivor.up()
    if dead.fake is not None:
        dead.kill()  # dead from the start: about half of the proxy's first picks hit a refused connection
    results = _retranslate(service, _tasks("dead"))
    assert _failed(results) == []
    # One call from the service per line: the proxy failed over inside it, the service did not retry.
    assert [r["attempts"] for r in results] == [1] * LINES
    assert len(survivor.chats()) == LINES
    breaker = _breaker(service)
    assert breaker["state"] == "closed", breaker
    assert breaker["consecutive_failures"] == 0, breaker


def test_no_host_left_fails_every_line_and_the_breaker_stays_closed(
    service: ServiceServer, hosts: tuple[Host, Host]
) -> None:
    """The proxy still answers (500/429): the service retries each line (its error kinds), fails it with a
    code, and its breaker, which counts only timeouts and refused connections, stays closed.

    Last in the module on purpose: the proxy then rests both hosts for its cooldown_time (30 s)."""
    for host in hosts:
        if host.fake is not None:
            host.kill()
    try:
        tasks = _tasks("none")[:8]
        results = _retranslate(service, tasks)
        assert [r["success"] for r in results] == [False] * len(tasks)
        assert all(r["translation"] is None for r in results)
        assert {r["error_code"] for r in results} <= {"server", "busy"}, _failed(results)
        retries = service.settings.max_retries
        assert [r["attempts"] for r in results] == [1 + retries] * len(tasks)
        assert _breaker(service)["state"] == "closed"
    finally:
        for host in hosts:
            host.up()
