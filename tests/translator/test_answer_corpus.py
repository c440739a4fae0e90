"""Every labelled case of tests/data/answer_corpus.jsonl is decided as labelled by `judge`, the one function
that accepts or refuses a fresh answer and a cached value alike (its budget: the line's editor budget)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from app.dubbing import length_budget
from app.languages import SUPPORTED_CODES, resolve_language
from app.translator.answers import judge

CORPUS = Path(__file__).resolve().parents[1] / "data" / "answer_corpus.jsonl"
CASES: list[dict[str, Any]] = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line]


def test_the_corpus_keeps_its_contract() -> None:
    assert len(CASES) >= 400
    for case in CASES:
        assert set(case) == {"source", "language", "answer", "label", "why"}, case
        assert case["label"] in ("accept", "reject"), case
        assert case["why"].strip(), case
    kinds = Counter((c["language"], c["label"]) for c in CASES)
    assert all(kinds[(code, label)] >= 10 for code in SUPPORTED_CODES for label in ("accept", "reject")), kinds
    assert len({(c["source"], c["language"], c["answer"]) for c in CASES}) == len(CASES), "duplicate cases"


def _id(case: dict[str, Any]) -> str:
    return f"{case['language']}:{case['label']}:{case['source']}->{case['answer'][:40]!r}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_each_case_is_decided_as_labelled(case: dict[str, Any]) -> None:
    lang = resolve_language(case["language"])
    verdict = judge(case["source"], lang, case["answer"], length_budget(case["source"], lang, None), max_chars=1000)
    assert verdict.accepted == (case["label"] == "accept"), (case["why"], verdict.check, verdict.message)
    if verdict.accepted:
        # What is accepted is handed on without a hidden character.
        assert all(ch not in verdict.text for ch in "\u200b\ufeff\u00ad\u2060"), repr(verdict.text)
