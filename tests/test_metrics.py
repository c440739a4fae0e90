"""GET /metrics: the instrumentator's HTTP metrics and our own retranslate_* metrics."""

from __future__ import annotations

import re

from tests.conftest import ServiceFactory
from tests.servers.fake_ollama import FakeOllama


def value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_metrics_count_outcomes_calls_retries_reasks_and_cache_hits(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    service = service_factory(cache_size=100, retry_backoff_s=0.0)  # its own registry: counts start at zero
    fake_clean.configure(
        failures=[{"mode": "http_500", "count": 1, "match": "重试"}],
        styles_by_source={"太长": "long_then_short"},
    )
    tasks = [
        {"task_id": "a", "source": "重试一次", "target_language": "ko"},
        {"task_id": "b", "source": "太长了吧", "target_language": "ko", "max_length": 5},
        {"task_id": "c", "source": "普通的话", "target_language": "ko"},
        {"task_id": "d", "source": "普通的话", "target_language": "ko"},  # joins c's call
    ]
    with service.client() as client:
        assert client.post("/retranslate", json={"tasks": tasks}).json()["summary"]["succeeded"] == 4
        client.post("/retranslate", json={"tasks": tasks[2:3]})  # a cache hit
        text = client.get("/metrics").text
    assert value(text, 'retranslate_tasks_total{outcome="succeeded"}') == 4
    assert value(text, 'retranslate_tasks_total{outcome="cached"}') == 1
    assert value(text, 'retranslate_backend_calls_total{status="server"}') == 1
    assert value(text, 'retranslate_backend_calls_total{status="ok"}') == 4  # a's retry, b and its re-ask, c
    assert value(text, "retranslate_retries_total") == 1
    assert value(text, "retranslate_reasks_total") == 1
    assert value(text, "retranslate_cache_hits_total") == 1
    assert value(text, "retranslate_dedup_joins_total") == 1
    assert value(text, "retranslate_backend_in_flight") == 0
    assert value(text, "retranslate_backend_latency_seconds_count") == 5
    assert 'http_requests_total{handler="/retranslate",method="POST",status="2xx"}' in text


def test_made_up_methods_and_paths_create_no_series(service_factory: ServiceFactory, fake_clean: FakeOllama) -> None:
    """/metrics labels come from a fixed set: 300 made-up methods and paths, keyless or not, add no series."""
    key = "metrics-key"
    service = service_factory(api_key=key)
    auth = {"Authorization": f"Bearer {key}"}
    with service.client() as client:
        client.get("/health")
        client.request("FOO", "/retranslate")
        client.request("BAR", "/made/up")  # the fixed set: a made-up method and path each have one label
        before = client.get("/metrics", headers=auth).text
        for i in range(150):
            client.request(f"M{i}", f"/made/up/{i}")
            client.request(f"X{i}", "/retranslate")  # keyless, a real path
        after = client.get("/metrics", headers=auth).text

    def series(text: str) -> set[str]:
        return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line.startswith("http_")}

    new = series(after) - series(before)
    assert not new, sorted(new)[:10]
    assert len(after) < 2 * len(before), (len(before), len(after))
