"""Candidates over real HTTP: k answers at once for a line that missed, each with its own seed, through the
backend's bound; against the fake Ollama's seed mode (its answer depends on the request's seed)."""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest

from app.dubbing import assess
from app.languages import resolve_language
from app.translator import candidates
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer

LINES = 60


def post(service: ServiceServer, body: dict) -> dict:
    with service.client() as client:
        response = client.post("/retranslate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def chat_records(fake: FakeOllama) -> list[dict]:
    return [r for r in fake.stats()["requests"] if r["path"] == "/api/chat"]


def lines(n: int, tag: str) -> list[dict]:
    # Distinct sources: the seed mode draws per (line, seed); 4 ideographs each, budget 12 Hangul letters.
    return [{"task_id": f"{tag}{i}", "source": f"第{i}号{tag}你好吗", "target_language": "ko"} for i in range(n)]


def run(service: ServiceServer, fake: FakeOllama, tasks: list[dict], **body: object) -> tuple[list[dict], dict]:
    results = post(service, {"tasks": tasks, "use_cache": False, **body})["results"]
    by_line: dict[str, list[dict]] = defaultdict(list)
    for record in chat_records(fake):
        by_line[record["source"]].append(record)
    return results, by_line


def stubborn_line(service: ServiceServer, fake: FakeOllama, tag: str, **fake_config: object) -> tuple[dict, list]:
    """One line whose every answer is over budget: re-asked twice in rounds of 3 (7 calls); its result and
    the calls the fake saw for it."""
    fake.configure(seed_over_rate=1.0, **fake_config)
    results, by_line = run(service, fake, lines(1, tag))
    item = results[0]
    assert item["attempts"] == 7
    assert item["candidates_considered"] == 7
    assert item["within_budget"] is False
    assert item["success"] is True
    return item, by_line[item["source"]]


def test_candidates_fit_more_lines_than_one_at_a_time_with_no_seed_sent_twice(
    service: ServiceServer, fake_clean: FakeOllama
) -> None:
    fake_clean.configure(seed_over_rate=0.6)
    one_at_a_time, calls_one = run(service, fake_clean, lines(LINES, "a"), candidates=1)
    fake_clean.reset()
    with_candidates, calls_k = run(service, fake_clean, lines(LINES, "b"), candidates=3)

    def rate(results: list[dict]) -> float:
        assert all(r["success"] for r in results)
        return sum(r["within_budget"] for r in results) / len(results)

    # Expected 1 - 0.6**3 = 78 % against 1 - 0.6**7 = 97 % (RETRANSLATE_MAX_REASKS = 2).
    assert rate(one_at_a_time) < 0.9 <= rate(with_candidates), (rate(one_at_a_time), rate(with_candidates))
    for results, by_line, k in ((one_at_a_time, calls_one, 1), (with_candidates, calls_k, 3)):
        for item in results:
            sent = by_line[item["source"]]
            seeds = [r["seed"] for r in sent]
            assert None not in seeds
            assert len(set(seeds)) == len(seeds), f"a seed sent twice for a line: {seeds}"
            assert item["attempts"] == len(sent)
            assert item["candidates_considered"] == len(sent)
            reasks = (len(sent) - 1) // k
            assert len(sent) == 1 + reasks * k  # the first ask, then rounds of k
            if reasks < 2:  # it stopped before RETRANSLATE_MAX_REASKS: a round's pick fitted
                assert item["within_budget"] is True


def test_a_reasked_lines_candidates_are_in_flight_together_when_the_engine_has_slots(
    service_factory, fake_clean: FakeOllama
) -> None:
    service = service_factory(candidates=3, max_concurrency=4)
    # The fake holds each re-ask until three are there.
    _, sent = stubborn_line(service, fake_clean, "c", gather_reasks=3)
    reasks = [r for r in sent if r["reask"]]
    assert len(reasks) == 6
    assert all(r.get("gathered") for r in reasks[:3]), "the first round's candidates were not in flight together"
    assert fake_clean.stats()["max_in_flight"] >= 3


def test_a_reasked_lines_candidates_go_one_after_another_on_a_one_slot_engine(
    service_factory, fake_clean: FakeOllama
) -> None:
    service = service_factory(candidates=3, max_concurrency=1)
    _, sent = stubborn_line(service, fake_clean, "d", parallel=1)
    assert fake_clean.stats()["max_in_flight"] == 1
    sent = sorted(sent, key=lambda r: r["t_start"])
    for earlier, later in itertools.pairwise(sent):
        assert earlier["t_end"] is not None
        assert earlier["t_end"] <= later["t_start"]
    assert len({r["seed"] for r in sent}) == 7


def test_candidates_one_is_one_reask_at_a_time(service_factory, fake_clean: FakeOllama) -> None:
    service = service_factory(candidates=3)
    fake_clean.configure(style="long_then_short")
    results, _ = run(service, fake_clean, lines(1, "e"), candidates=1)
    item = results[0]
    assert item["attempts"] == 2
    assert item["candidates_considered"] == 2
    assert item["within_budget"] is True
    fake_clean.reset()
    fake_clean.configure(seed_over_rate=1.0)
    results, _by_line = run(service, fake_clean, lines(1, "f"), candidates=1)
    assert results[0]["attempts"] == 3  # the first ask + RETRANSLATE_MAX_REASKS, one at a time
    assert fake_clean.stats()["max_in_flight"] == 1


def test_a_line_that_fits_at_once_costs_one_call(service_factory, fake_clean: FakeOllama) -> None:
    service = service_factory(candidates=3)
    results, _ = run(service, fake_clean, lines(5, "g"))
    assert [r["attempts"] for r in results] == [1] * 5
    assert [r["candidates_considered"] for r in results] == [1] * 5


@pytest.mark.parametrize("value", [0, -1, 9, True, False, 2.0, 2.5, "3", "three"])
def test_candidates_must_be_an_integer_from_1(service: ServiceServer, value: object) -> None:
    with service.client() as client:
        response = client.post("/retranslate", json={"tasks": lines(1, "h"), "candidates": value})
    assert response.status_code == 422, response.text
    assert "candidates" in response.text


# --- the picking rule (pure) ---------------------------------------------------------------------------

KO = resolve_language("ko")


def fit(answer: str, budget: int | None = 4):
    return assess(answer, "你好吗朋友", KO, budget)


@pytest.mark.parametrize(
    ("answers", "budget", "chosen"),
    [
        (["가나다라마바", "가나다", "가나다라"], 4, 2),  # within budget, closest from below
        (["가나다라마바", "가나다라마"], 4, 1),  # none fits: the least over
        (["你好", "가나다라마바사"], 4, 1),  # every rule kept beats fitting
        (["가나", "가나"], 4, 0),  # a tie: the first
        (["가나다라마", "가나"], None, 0),  # no budget: the first that keeps the rules
    ],
)
def test_pick(answers: list[str], budget: int | None, chosen: int) -> None:
    assert candidates.pick([fit(a, budget) for a in answers]) == chosen


def test_seeds_never_repeat_and_temperatures_vary() -> None:
    seeds = candidates.Seeds("a line's key")
    drawn = [seeds.next() for _ in range(50)]
    assert len(set(drawn)) == 50
    assert all(0 <= s < 2**31 for s in drawn)
    assert candidates.Seeds("a line's key").next() == drawn[0]  # a rerun asks the same seeds
    assert candidates.temperatures(3, 0.0) == [0.0, candidates.CANDIDATE_TEMPERATURE, candidates.CANDIDATE_TEMPERATURE]
    assert all(t > 0 for t in candidates.temperatures(4, 0.0)[1:])
