"""`python -m app.eval`: the model report. Which installed model fits the dub best, per language?

Runs the shipped set of Chinese subtitle lines (app/data/eval_lines.json) through the configured backend,
in-process with the service's own engine (like `python -m app.cli`), for each model and language, and writes
to --out DIR:
- results.json: a list of rows {model, language, lines, within_budget_rate, rules_pass_rate, calls_per_line,
  seconds_per_line, chrf};
- report.md: the same as a table, the best model of each language marked;
- chart.png: within-budget rate per language and model (needs matplotlib: `pip install '.[eval]'`).

`chrf` is null unless --references FILE gives reference translations ({"en": {"l01": "...", ...}, ...}, keyed
by the line ids of the shipped set); then it is sacrebleu's corpus chrF (0-100) of the lines that have one.
Progress goes to stderr. Ctrl-C stops the run and still writes what was measured (a language cut short is
reported with the lines it finished).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from app.errors import ServiceError
from app.languages import LANGUAGES, UnknownLanguage, resolve_language
from app.schemas import ItemResult, RetranslateRequest, Task
from app.service import RetranslateService
from app.settings import Settings, load_settings
from app.vocabulary import MODEL_PREFERENCE, same_model

log = logging.getLogger("app.eval")

ROW_FIELDS = (
    "model", "language", "lines", "within_budget_rate", "rules_pass_rate", "calls_per_line", "seconds_per_line",
    "chrf",
)  # fmt: skip


class EvalError(Exception):
    """A bad argument or an unusable backend: said on stderr, exit status 2."""


@dataclass(frozen=True)
class Line:
    id: str
    source: str
    kind: str


def shipped_lines() -> list[Line]:
    """The shipped evaluation set (package data)."""
    text = resources.files("app").joinpath("data/eval_lines.json").read_text(encoding="utf-8")
    return [Line(str(e["id"]), str(e["source"]), str(e.get("kind", ""))) for e in json.loads(text)["lines"]]


def read_references(path: Path, lines: Sequence[Line]) -> dict[str, dict[str, str]]:
    """{language code: {line id: reference}} from FILE; unknown languages or ids are an error (a typo would
    silently score nothing)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvalError(f"--references {path}: cannot read it as JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise EvalError(f'--references {path}: expected an object {{"en": {{"l01": "reference", ...}}, ...}}')
    ids = {line.id for line in lines}
    refs: dict[str, dict[str, str]] = {}
    for lang_name, by_id in raw.items():
        try:
            code = resolve_language(str(lang_name)).code
        except UnknownLanguage as exc:
            raise EvalError(f"--references {path}: {exc}") from None
        if not isinstance(by_id, dict) or not all(isinstance(v, str) for v in by_id.values()):
            raise EvalError(f"--references {path}: {lang_name!r} must map line ids to reference strings")
        unknown = sorted(set(by_id) - ids)
        if unknown:
            raise EvalError(f"--references {path}: {lang_name!r} names line ids not in the set: {unknown[:5]}")
        refs[code] = {str(k): v for k, v in by_id.items()}
    return refs


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu's corpus chrF (0-100)."""
    try:
        from sacrebleu.metrics.chrf import CHRF
    except ImportError:
        raise EvalError("--references needs sacrebleu: pip install '.[eval]'") from None
    return round(float(CHRF().corpus_score(list(hypotheses), [list(references)]).score), 2)


def score(model: str, language: str, results: Sequence[ItemResult], ids: Sequence[str], seconds: float,
          refs: dict[str, str] | None) -> dict[str, Any]:  # fmt: skip
    """One row. A failed line counts as neither within budget nor keeping the rules, and scores an empty
    hypothesis against its reference."""
    n = len(results)
    row: dict[str, Any] = {
        "model": model,
        "language": language,
        "lines": n,
        "within_budget_rate": round(sum(1 for r in results if r.success and r.within_budget is not False) / n, 4),
        "rules_pass_rate": round(sum(1 for r in results if r.success) / n, 4),
        "calls_per_line": round(sum(r.attempts for r in results) / n, 3),
        "seconds_per_line": round(seconds / n, 6),  # to the µs: a fast engine costs well under 1 ms a line
        "chrf": None,
    }
    if refs:
        pairs = [(r.translation or "", refs[i]) for r, i in zip(results, ids, strict=True) if i in refs]
        if pairs:
            row["chrf"] = chrf([h for h, _ in pairs], [ref for _, ref in pairs])
    return row


def best_models(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Per language, the model whose lines fit best: within budget, then rules kept, then chrF, then fewer
    calls, then speed."""
    best: dict[str, dict[str, Any]] = {}

    def key(r: dict[str, Any]) -> tuple[float, ...]:
        return (r["within_budget_rate"], r["rules_pass_rate"], r["chrf"] or 0.0, -r["calls_per_line"],
                -r["seconds_per_line"])  # fmt: skip

    for row in rows:
        if row["lines"] and (row["language"] not in best or key(row) > key(best[row["language"]])):
            best[row["language"]] = row
    return {lang: row["model"] for lang, row in best.items()}


def report_markdown(rows: Sequence[dict[str, Any]], stopped: bool) -> str:
    best = best_models(rows)
    out = ["# Model report", ""]
    if stopped:
        out += ["Stopped before the end (Ctrl-C): the figures cover the lines measured so far.", ""]
    out += [
        "| language | model | lines | within budget | rules kept | calls per line | seconds per line | chrF |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["language"], r["model"])):
        mark = " ★" if best.get(r["language"]) == r["model"] and len({x["model"] for x in rows}) > 1 else ""
        chrf_text = "–" if r["chrf"] is None else f"{r['chrf']:.1f}"
        out.append(
            f"| {r['language']} | {r['model']}{mark} | {r['lines']} | {r['within_budget_rate']:.1%} | "
            f"{r['rules_pass_rate']:.1%} | {r['calls_per_line']:.2f} | {r['seconds_per_line']:.2f} | {chrf_text} |"
        )
    out += [
        "",
        "★: the best model for that language (within budget first, then rules kept, then chrF, then fewer calls, "
        "then speed).",
        "Within budget: lines whose translation fits the editor's length budget; rules kept: lines with a "
        "translation at all (every hard rule kept). See docs/candidates.md.",
    ]
    return "\n".join(out) + "\n"


def write_chart(rows: Sequence[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("chart.png skipped: it needs matplotlib (pip install '.[eval]')", file=sys.stderr)
        return False
    languages = sorted({r["language"] for r in rows})
    models = sorted({r["model"] for r in rows})
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(languages) + 2), 4))
    for m, model in enumerate(models):
        values = {r["language"]: r["within_budget_rate"] * 100 for r in rows if r["model"] == model}
        xs = [i + m * width for i in range(len(languages))]
        ax.bar(xs, [values.get(lang, 0.0) for lang in languages], width, label=model)
    ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(languages))], languages)
    ax.set_ylabel("lines within budget (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Lines that fit their dub, per language and model")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_outputs(out: Path, rows: Sequence[dict[str, Any]], stopped: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(list(rows), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(report_markdown(rows, stopped), encoding="utf-8")
    if rows:
        write_chart(rows, out / "chart.png")


@dataclass
class Run:
    """What has been measured so far (kept when the run is stopped)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    # The (model, language) in progress: its finished items and when it started.
    current: tuple[str, str] | None = None
    done: dict[int, ItemResult] = field(default_factory=dict)
    started: float = 0.0

    def partial_row(self, lines: Sequence[Line], refs: dict[str, dict[str, str]]) -> dict[str, Any] | None:
        if self.current is None or not self.done:
            return None
        model, language = self.current
        indices = sorted(self.done)
        return score(model, language, [self.done[i] for i in indices], [lines[i].id for i in indices],
                     time.monotonic() - self.started, refs.get(language))  # fmt: skip


def default_models(installed: Sequence[str], demo: bool) -> list[str]:
    preferred = [m for m in MODEL_PREFERENCE if any(same_model(m, i) for i in installed)]
    if preferred:
        return [next(i for i in installed if same_model(m, i)) for m in preferred]
    if demo:
        return list(installed)  # the embedded demo model: the only one there is
    raise EvalError(
        "no model of the preference list is installed (installed: "
        f"{', '.join(installed) or 'none'}); name models with --models M1,M2"
    )


async def evaluate(
    settings: Settings,
    models: Sequence[str] | None,
    languages: Sequence[str],
    lines: Sequence[Line],
    refs: dict[str, dict[str, str]],
    run: Run,
    progress: Callable[[str], None],
) -> None:
    service = RetranslateService(settings, allow_autostart=True)
    try:
        await service.open(check_backend=False)
        try:
            installed = await service.available_models()
        except ServiceError as exc:
            raise EvalError(f"no backend can translate: {exc.detail}") from None
        chosen = list(models) if models else default_models(installed, service.demo)
        tasks = [Task(task_id=line.id, source=line.source, target_language="ko") for line in lines]
        for model in chosen:
            for position, language in enumerate(languages):
                body = RetranslateRequest(
                    tasks=[t.model_copy(update={"target_language": language}) for t in tasks],
                    model=model,
                    use_cache=False,  # the report measures the model, not the cache
                    # The next model loads next: free this one's memory after its last language.
                    unload_after=position == len(languages) - 1,
                )
                run.current, run.done, run.started = (model, language), {}, time.monotonic()

                def on_result(
                    index: int, result: ItemResult, done: int, total: int, what: str = f"{model} {language}"
                ) -> None:
                    run.done[index] = result
                    progress(f"{what}: {done}/{total} lines")

                try:
                    # Without a lease the batch acquires its engine and releases it itself (unload_after).
                    response = await service.retranslate(body, on_result=on_result)
                except ServiceError as exc:
                    raise EvalError(f"model {model}: {exc.detail}") from None
                seconds = time.monotonic() - run.started
                row = score(model, language, response.results, [line.id for line in lines], seconds,
                            refs.get(language))  # fmt: skip
                run.rows.append(row)
                run.current = None
                progress(
                    f"{model} {language}: {row['within_budget_rate']:.0%} within budget, "
                    f"{row['rules_pass_rate']:.0%} rules kept, {row['seconds_per_line']:.2f} s per line\n"
                )
    finally:
        await service.close()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app.eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", help="M1,M2,... (default: the installed models of the preference list)")
    parser.add_argument(
        "--languages", default=",".join(lang.code for lang in LANGUAGES), help="codes or names (default: all seven)"
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for results.json, report.md, chart.png")
    parser.add_argument("--references", type=Path, help='reference translations: {"en": {"l01": "...", ...}, ...}')
    return parser.parse_args(argv)


def languages_from(text: str) -> list[str]:
    codes: list[str] = []
    for name in (part.strip() for part in text.split(",")):
        if not name:
            continue
        try:
            code = resolve_language(name).code
        except UnknownLanguage as exc:
            raise EvalError(f"--languages: {exc}") from None
        if code not in codes:
            codes.append(code)
    if not codes:
        raise EvalError("--languages names no language")
    return codes


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C must stop the run even when a shell started it in the background (SIGINT ignored there), and a
    # SIGTERM stops it the same way: both keep what was measured.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    settings = load_settings()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    lines = shipped_lines()
    try:
        languages = languages_from(args.languages)
        models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
        refs = read_references(args.references, lines) if args.references else {}
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run = Run()
    tty = sys.stderr.isatty()

    def progress(text: str) -> None:
        if text.endswith("\n"):
            sys.stderr.write(("\r\033[K" if tty else "") + text)
        elif tty:
            sys.stderr.write("\r\033[K" + text)
        sys.stderr.flush()

    stopped = False
    status = 0
    try:
        asyncio.run(evaluate(settings, models, languages, lines, refs, run, progress))
    except KeyboardInterrupt:
        stopped = True
        partial = run.partial_row(lines, refs)
        if partial is not None:
            run.rows.append(partial)
        print("\nstopped: writing what was measured", file=sys.stderr)
        status = 130
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = 2
    if run.rows or status == 0:
        write_outputs(args.out, run.rows, stopped)
        print(f"report: {args.out / 'report.md'}", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
