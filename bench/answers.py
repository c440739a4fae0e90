"""What the answers of the real engine cost: unusable answers, calls per line, rule failures.

    python bench/answers.py [--runs R] [--prompt-only] [--json OUT]

Runs the 16 engine lines (bench/workload.py) zh->en and zh->ko through the service's own RetranslateService on the
embedded llama-server with the packaged demo model, twice per run: with structured output (the answer's JSON
schema as `response_format`) and in the prompt-only form (what a server that rejects the schema gets).
Reports, per language and form: calls per line, unusable answers (no parseable translation), lines that
ended failed, and why. The cache is off, so every run asks the service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workload import ENGINE_LINES

from app.schemas import RetranslateRequest, Task
from app.service import RetranslateService
from app.settings import Settings

LANGS = ("en", "ko")


async def one_form(service: RetranslateService, lang: str, structured: bool) -> dict[str, Any]:
    lease = await service.acquire(None)
    lease.handle.backend.structured = structured
    before = {label: value for label, value in _calls(service).items()}
    body = RetranslateRequest(
        tasks=[Task(task_id=f"{lang}{i}", source=s, target_language=lang) for i, s in enumerate(ENGINE_LINES)],
        use_cache=False,
    )
    try:
        response = await service.retranslate(body, lease)
    finally:
        await service.release(lease, unload=False)
    after = _calls(service)
    calls = {label: after.get(label, 0) - before.get(label, 0) for label in after}
    results = response.results
    return {
        "lang": lang,
        "form": "structured" if structured else "prompt-only",
        "lines": len(results),
        "calls": sum(calls.values()),
        "calls_per_line": round(sum(calls.values()) / len(results), 2),
        "unusable_answers": calls.get("unusable_output", 0),
        "calls_by_outcome": {k: v for k, v in calls.items() if v},
        "succeeded": sum(1 for r in results if r.success),
        "failed_by_code": dict(Counter(r.error_code for r in results if not r.success)),
        "rules_broken": dict(Counter(w for r in results for w in r.warnings if w != "over_budget")),
        "samples": [(r.source, r.translation) for r in results[:4]],
    }


def _calls(service: RetranslateService) -> dict[str, float]:
    counts: dict[str, float] = {}
    for metric in service.metrics.backend_calls.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["status"]] = sample.value
    return counts


async def main_async(runs: int, forms: list[bool]) -> list[dict[str, Any]]:
    settings = Settings(
        _env_file=None,
        backend="embedded",
        max_concurrency=4,
        request_timeout_s=120.0,
        item_timeout_s=600.0,
        cache_size=0,
        log_level="WARNING",
    )
    service = RetranslateService(settings, allow_autostart=False)
    await service.open(check_backend=False)
    rows = []
    try:
        for run in range(runs):
            for lang in LANGS:
                for structured in forms:
                    row = await one_form(service, lang, structured)
                    row["run"] = run
                    rows.append(row)
                    print(json.dumps({k: v for k, v in row.items() if k != "samples"}, ensure_ascii=False), flush=True)
    finally:
        await service.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt-only", action="store_true", help="only the prompt-only form")
    parser.add_argument("--json", type=Path, help="write every row here")
    args = parser.parse_args()
    forms = [False] if args.prompt_only else [True, False]
    rows = asyncio.run(main_async(args.runs, forms))
    print("\nlang  form         calls/line  unusable  succeeded  (per run, 16 lines)")
    for lang in LANGS:
        for form in ("structured", "prompt-only"):
            mine = [r for r in rows if r["lang"] == lang and r["form"] == form]
            if mine:
                cpl = sum(r["calls_per_line"] for r in mine) / len(mine)
                unusable = sum(r["unusable_answers"] for r in mine) / len(mine)
                ok = sum(r["succeeded"] for r in mine) / len(mine)
                print(f"{lang:5} {form:12} {cpl:10.2f} {unusable:9.1f} {ok:10.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
