"""`python -m app.eval` (the model report), run as a user runs it, against the fake Ollama over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.eval import shipped_lines
from app.languages import LANGUAGES
from tests.helpers import chat_calls, wait_until
from tests.servers.fake_ollama import FakeOllama, translate

ROOT = Path(__file__).resolve().parent.parent
INSTRUCT = "qwen3:4b-instruct-2507-q4_K_M"
MODELS = f"{INSTRUCT},qwen3:4b"
N = len(shipped_lines())


def eval_cmd(fake: FakeOllama, out: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRANSLATE_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "RETRANSLATE_OLLAMA_URL": fake.url,
            "RETRANSLATE_AUTOSTART_OLLAMA": "false",
            "RETRANSLATE_CACHE_SIZE": "0",
            "RETRANSLATE_CANDIDATES": "3",
            "RETRANSLATE_MAX_REASKS": "2",
        }
    )
    return [sys.executable, "-m", "app.eval", "--out", str(out), *args], env


def run_eval(fake: FakeOllama, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd, env = eval_cmd(fake, out, *args)
    done = subprocess.run(cmd, env=env, cwd=out.parent, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return done


def rows(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def test_the_shipped_set_has_60_lines_or_more_of_every_kind() -> None:
    lines = shipped_lines()
    assert len(lines) >= 60
    assert len({line.id for line in lines}) == len(lines)
    assert {"dialogue", "names", "numbers", "exclamations", "long", "short"} <= {line.kind for line in lines}


def test_answers_that_always_fit_report_100_percent(fake_clean: FakeOllama, tmp_path: Path) -> None:
    out = tmp_path / "fit"
    done = run_eval(fake_clean, out, "--models", MODELS)
    got = rows(out)
    assert [(r["model"], r["language"]) for r in got] == [
        (m, lang.code) for m in MODELS.split(",") for lang in LANGUAGES
    ]
    for row in got:
        assert set(row) == {"model", "language", "lines", "within_budget_rate", "rules_pass_rate", "calls_per_line",
                            "seconds_per_line", "chrf"}  # fmt: skip
        assert row["lines"] == N
        assert row["within_budget_rate"] == 1.0
        assert row["rules_pass_rate"] == 1.0
        assert row["calls_per_line"] == 1.0
        assert row["chrf"] is None
        assert row["seconds_per_line"] > 0
    assert chat_calls(fake_clean) == N * len(LANGUAGES) * 2
    report = (out / "report.md").read_text(encoding="utf-8")
    for lang in LANGUAGES:
        table = [line for line in report.splitlines() if line.startswith(f"| {lang.code} | ")]
        assert len(table) == 2
        assert all(f" | {N} | 100.0% | 100.0% | 1.00 | " in line for line in table), table
        # A tie on the figures: the faster one gets the mark, exactly one per language.
        assert sum("★" in line for line in table) == 1, table
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ko: 100% within budget" in done.stderr


def test_answers_that_never_fit_report_0_percent(fake_clean: FakeOllama, tmp_path: Path) -> None:
    fake_clean.configure(style="never_comply_long")
    out = tmp_path / "never"
    # Korean and Japanese: the fake's long Latin answers (its word list four times over) read as another
    # language to the language identifier, which is a rule of its own.
    run_eval(fake_clean, out, "--models", INSTRUCT, "--languages", "ko,日语")
    got = rows(out)
    assert [r["language"] for r in got] == ["ko", "ja"]
    for row in got:
        assert row["within_budget_rate"] == 0.0
        assert row["rules_pass_rate"] == 1.0  # over budget is a warning: the line still has a translation
        assert row["calls_per_line"] == 7.0  # the first ask + 2 follow-ups of 3 candidates
    report = (out / "report.md").read_text(encoding="utf-8")
    assert f"| ja | {INSTRUCT} | {N} | 0.0% | 100.0% | 7.00 |" in report


def test_references_give_chrf(fake_clean: FakeOllama, tmp_path: Path) -> None:
    lines = shipped_lines()
    refs = {"en": {line.id: translate(line.source, "en") for line in lines}, "ko": {lines[0].id: "완전히 다른 문장"}}
    ref_file = tmp_path / "refs.json"
    ref_file.write_text(json.dumps(refs, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "refs"
    run_eval(fake_clean, out, "--models", INSTRUCT, "--languages", "en,ko,fr", "--references", str(ref_file))
    chrf = {r["language"]: r["chrf"] for r in rows(out)}
    assert chrf["en"] == 100.0
    assert chrf["ko"] is not None
    assert chrf["ko"] < 20
    assert chrf["fr"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--languages", "xx"], "--languages"), (["--references", "missing.json"], "--references")],
)
def test_bad_arguments_say_what_is_wrong(fake_clean: FakeOllama, tmp_path: Path, args: list[str], message: str) -> None:
    cmd, env = eval_cmd(fake_clean, tmp_path / "bad", *args)
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "bad").exists()


def test_ctrl_c_keeps_what_was_measured(fake_clean: FakeOllama, tmp_path: Path) -> None:
    fake_clean.configure(latency_s=0.2, parallel=1)
    out = tmp_path / "stopped"
    cmd, env = eval_cmd(fake_clean, out, "--models", INSTRUCT, "--languages", "ko")
    # Started the way a shell starts a background job: SIGINT ignored (the run must still stop on it).
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    try:
        # The service keeps 4 calls in flight: the 8th call's arrival means at least 4 lines are done.
        assert wait_until(lambda: chat_calls(fake_clean) >= 8, timeout_s=120), "the run never reached the backend"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    (row,) = rows(out)
    assert 1 <= row["lines"] < N
    assert row["within_budget_rate"] == 1.0
    assert "Stopped before the end" in (out / "report.md").read_text(encoding="utf-8")
