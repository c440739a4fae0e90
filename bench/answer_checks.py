"""How the answer checks decide the labelled corpus (tests/data/answer_corpus.jsonl).

    PYTHONPATH=$PWD python bench/answer_checks.py [--cases]

Prints, per check and per language, the false rejections (a right translation refused, counted under the
check that refused it) and the false acceptances (a non-translation let through, counted under
"(accepted)"), then the totals. With --cases, every wrongly decided case too. Exit status 1 when any case
is decided wrong. Every case goes through `app.translator.answers.judge`, the one function that decides
fresh answers and cached values alike, with the line's editor budget.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from app.dubbing import length_budget
from app.languages import SUPPORTED_CODES, resolve_language
from app.translator.answers import judge

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "answer_corpus.jsonl"


def load(path: Path = CORPUS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def decide(case: dict[str, Any]) -> tuple[bool, str | None, str]:
    """(accepted, the refusing check or None, its message) for one corpus case."""
    lang = resolve_language(case["language"])
    verdict = judge(case["source"], lang, case["answer"], length_budget(case["source"], lang, None))
    return verdict.accepted, verdict.check, verdict.message


def main(argv: list[str]) -> int:
    cases = load()
    false_rej: Counter[tuple[str, str]] = Counter()
    false_acc: Counter[tuple[str, str]] = Counter()
    wrong: list[str] = []
    labels = Counter((c["language"], c["label"]) for c in cases)
    for case in cases:
        accepted, check, message = decide(case)
        expected = case["label"] == "accept"
        if accepted == expected:
            continue
        if expected:
            false_rej[(check or "?", case["language"])] += 1
        else:
            false_acc[("(accepted)", case["language"])] += 1
        kind = "FALSE REJECT" if expected else "FALSE ACCEPT"
        wrong.append(f"{kind} [{case['language']}] {case['source']!r} -> {case['answer']!r}: "
                     f"{message or 'accepted'} (label: {case['why']})")  # fmt: skip
    codes = list(SUPPORTED_CODES)
    print(f"corpus: {len(cases)} cases; " + ", ".join(
        f"{c} {labels[(c, 'accept')]}+/{labels[(c, 'reject')]}-" for c in codes))  # fmt: skip
    print()
    print("| check | kind | " + " | ".join(codes) + " | total |")
    print("|---|---|" + "---|" * (len(codes) + 1))
    for title, counts in (("false rejections", false_rej), ("false acceptances", false_acc)):
        for check in sorted({k for k, _ in counts}):
            row = [counts[(check, c)] for c in codes]
            print(f"| `{check}` | {title} | " + " | ".join(str(n) for n in row) + f" | {sum(row)} |")
    print(
        "| all | false rejections | "
        + " | ".join(str(sum(v for (k, c), v in false_rej.items() if c == code)) for code in codes)
        + f" | {sum(false_rej.values())} |"
    )
    print(
        "| all | false acceptances | "
        + " | ".join(str(sum(v for (k, c), v in false_acc.items() if c == code)) for code in codes)
        + f" | {sum(false_acc.values())} |"
    )
    if "--cases" in argv:
        print()
        print("\n".join(wrong))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
