"""Candidates on the real engine: llama-server returns a line's candidates from one request (`n`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import ENGINE, engine_available, make_settings
from tests.helpers import wait_ready
from tests.servers.service import ServiceServer

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def candidates_engine() -> Iterator[ServiceServer]:
    if not engine_available():
        pytest.skip("the embedded extra is not installed")
    server = ServiceServer(make_settings(**ENGINE, candidates=3, max_reasks=1)).start(180)
    wait_ready(server.url, 300)
    yield server
    server.stop()


def test_a_reasked_lines_candidates_come_from_one_request_with_free_slots(candidates_engine: ServiceServer) -> None:
    # A budget of one word for a long line: the demo model misses it, and the line is re-asked once.
    task = {"task_id": "n1", "source": "我们明天早上八点在火车站见面吧", "target_language": "en", "max_length": 1}
    with candidates_engine.client(timeout=600) as client:
        response = client.post("/retranslate", json={"tasks": [task], "use_cache": False})
    assert response.status_code == 200, response.text
    item = response.json()["results"][0]
    if item["attempts"] == 1:
        pytest.skip(f"the model's first answer fitted a budget of one word: {item['translation']!r}")
    # Without `n` every answer is a call of its own: considered <= attempts.
    assert item["candidates_considered"] > item["attempts"], item
