"""`python -m app.cli CONFIG.json` as LocalClip-Editor's callers run it: a real subprocess against the fake
Ollama, its real output parsed with each caller's own rule (/work/shared/upstream/README.md)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.conftest import DEMO_KEY, ServiceFactory
from tests.servers.fake_ollama import FakeOllama, translate
from tests.servers.fake_ollama_cli import write_fake_ollama_executable
from tests.servers.service import ServiceServer, free_port

VENV_PYTHON = sys.executable
CLI = [VENV_PYTHON, "-m", "app.cli"]
LINE_LIMIT = 64 * 1024  # asyncio's default StreamReader limit, used by the translation-stage caller
RUN_TIMEOUT_S = 120.0


# --- the editor's callers, as they really parse the output ---------------------------------------------------


def live_caller_parse(output: str) -> list[dict[str, Any]]:
    """voice_cloning_service._retranslate_too_long_items (and backend/main.py): scan from the end for the first
    line starting with `[` and json.loads from there to the end."""
    lines = output.strip().split("\n")
    for start in range(len(lines) - 1, -1, -1):
        if lines[start].strip().startswith("["):
            return json.loads("\n".join(lines[start:]))
    raise AssertionError(f"no line starts with [:\n{output}")


def results_block_parse(output: str) -> list[dict[str, Any]]:
    """translation_service (and the legacy batch route): the [Results] ... [/Results] block."""
    match = re.search(r"\[Results\](.*?)\[/Results\]", output, re.DOTALL)
    assert match, f"no [Results] block:\n{output}"
    return json.loads(match.group(1))


def single_line_route_parse(stdout: str) -> list[dict[str, Any]]:
    """/translate-text in the editor's backend: from the first line starting with `[` after a line containing
    FINAL RESULTS (JSON), to the end, skipping lines starting with `=`."""
    lines = stdout.split("\n")
    marker = next(i for i, line in enumerate(lines) if "FINAL RESULTS (JSON)" in line)
    start = next(i for i in range(marker + 1, len(lines)) if lines[i].startswith("["))
    return json.loads("\n".join(line for line in lines[start:] if not line.startswith("=")))


def run_live_caller(command: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """stderr merged into stdout, decoded as UTF-8 with bad bytes replaced; the editor kills it at 600 s."""
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd, timeout=600)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def live_caller(command: list[str], env: dict[str, str], cwd: Path) -> tuple[list[dict[str, Any]], str]:
    """What the live caller ends up with: results only with exit code 0 and output."""
    code, output = run_live_caller(command, env, cwd)
    assert code == 0, output
    assert output.strip()
    return live_caller_parse(output), output


async def translation_stage(command: list[str], env: dict[str, str], cwd: Path) -> tuple[list[dict[str, Any]], str]:
    """asyncio subprocess, stderr merged, read line by line with asyncio's default 64 KiB limit (a longer line
    raises), no timeout in the editor (bounded here), then the [Results] regex."""
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=cwd
    )
    assert proc.stdout is not None
    lines: list[bytes] = []

    async def read_all() -> None:
        while line := await proc.stdout.readline():  # type: ignore[union-attr]
            lines.append(line)

    try:
        await asyncio.wait_for(read_all(), RUN_TIMEOUT_S)
    finally:
        if proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    output = b"".join(lines).decode("utf-8", "replace")
    return results_block_parse(output), output


def single_line_route(command: list[str], env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    """stdout only (stderr kept apart), 300 s timeout, a non-zero exit is an HTTP 500."""
    proc = subprocess.run(command, capture_output=True, env=env, cwd=cwd, timeout=300)
    assert proc.returncode == 0, proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")
    return single_line_route_parse(proc.stdout.decode("utf-8"))


# --- helpers ------------------------------------------------------------------------------------------------


def cli_env(fake: FakeOllama, **overrides: str) -> dict[str, str]:
    """The CLI's environment: the fake Ollama, no autostart, fast retries; nothing from our own environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRANSLATE_")}
    env.update(
        RETRANSLATE_OLLAMA_URL=fake.url,
        RETRANSLATE_AUTOSTART_OLLAMA="false",
        RETRANSLATE_BACKEND="ollama",
        RETRANSLATE_RETRY_BACKOFF_S="0.01",
        RETRANSLATE_RETRY_BACKOFF_MAX_S="0.05",
    )
    env.update(overrides)
    return env


def write_config(directory: Path, config: Any, *, bom: bool = False) -> Path:
    path = directory / "retranslate_config.json"
    data = json.dumps(config, ensure_ascii=False).encode("utf-8")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def task(task_id: str, source: str, language: str, **extra: Any) -> dict[str, Any]:
    return {"task_id": task_id, "source": source, "target_language": language, **extra}


def chat_models(fake: FakeOllama) -> list[str]:
    return [r["body"]["model"] for r in fake.stats()["requests"] if r["path"] == "/api/chat"]


def lines_of(output: str) -> list[str]:
    return output.rstrip("\n").split("\n")


def assert_list_is_last(output: str, results: list[dict[str, Any]]) -> None:
    """The final list ends the output: the last line is its closing bracket, nothing after."""
    assert output.endswith("]\n"), output[-300:]
    assert live_caller_parse(output) == results


# The live caller's config: no model, Chinese language names, retrans-<index> ids.
LIVE_TASKS = [
    task("retrans-3", "是个小包工头", "韩语"),
    task("retrans-4", "大哥", "韩语"),
    task("retrans-7", "我们明天再说吧", "日语"),
    task("retrans-9", "你到底想干什么", "英语"),
]


# --- the three ways the editor parses -------------------------------------------------------------------------


def test_live_caller_gets_every_translation(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS, "num_processes": 1})
    results, output = live_caller([*CLI, str(config)], cli_env(fake_clean), tmp_path)
    expected = {"retrans-3": ("ko", "是个小包工头"), "retrans-4": ("ko", "大哥")}
    expected |= {"retrans-7": ("ja", "我们明天再说吧"), "retrans-9": ("en", "你到底想干什么")}
    assert [r["task_id"] for r in results] == [t["task_id"] for t in LIVE_TASKS]
    for item in results:
        lang, source = expected[item["task_id"]]
        assert item == {
            "task_id": item["task_id"],
            "source": source,
            "translation": translate(source, lang),
            "success": True,
            "elapsed": item["elapsed"],
        }
    # Progress as the old script printed it, a summary, the model and why, then the two markers.
    text = lines_of(output)
    progress = [line for line in text if re.match(r"^\[\d+/4\] ✓ retrans-\d+: .+ -> .+ \(\d+\.\d\ds(; .+)?\)$", line)]
    assert len(progress) == 4
    # ... with where each line's time went (the fake reports Ollama's durations)
    assert all(re.search(r"; service_wait \d+\.\d\ds, engine_wait \d+\.\d\ds, load ", line) for line in progress)
    assert any(line.startswith("总计: 4 个任务") for line in text)
    model_line = next(line for line in text if line.startswith("model: "))
    # The config names no model: the service's choice, the first installed of the preference list.
    assert model_line.startswith("model: qwen3:4b-instruct-2507-q4_K_M (the config names no model")
    assert "preference list" in model_line
    order = [
        text.index(progress[-1]),
        next(i for i, line in enumerate(text) if line.startswith("总计")),
        text.index(model_line),
        text.index("[Results]"),
        text.index("[/Results]"),
        next(i for i, line in enumerate(text) if "FINAL RESULTS (JSON)" in line),
    ]
    assert order == sorted(order)
    assert not text[order[-1]].startswith("[")
    # That model did the work, and was unloaded afterwards for voice cloning.
    assert set(chat_models(fake_clean)) == {"qwen3:4b-instruct-2507-q4_K_M"}
    assert fake_clean.stats()["unloads"] == ["qwen3:4b-instruct-2507-q4_K_M"]


async def test_translation_stage_reads_a_results_block_far_over_64_kib(fake_clean: FakeOllama, tmp_path: Path) -> None:
    # The translation stage: item-<index> ids, raw codes, a per-task max_length, output_file = the subtitle file.
    fake_clean.configure(parallel=8)
    subtitles = tmp_path / "translated_ja.srt"
    subtitles.write_bytes("1\r\n00:00:01,000 --> 00:00:02,000\r\nこんにちは\r\n".encode())
    before = subtitles.read_bytes()
    sources = [f"第{i}句台词说得太长了" for i in range(1500)]
    config = write_config(
        tmp_path,
        {
            "tasks": [task(f"item-{i}", s, "ja", max_length=int(len(s) * 3.0 * 0.8)) for i, s in enumerate(sources)],
            "model": "qwen2.5:32b",
            "output_file": str(subtitles),
        },
    )
    env = cli_env(fake_clean, RETRANSLATE_MAX_CONCURRENCY="8")
    results, output = await translation_stage([*CLI, str(config)], env, tmp_path)
    assert [r["task_id"] for r in results] == [f"item-{i}" for i in range(1500)]
    assert [r["translation"] for r in results] == [translate(s, "ja") for s in sources]
    block = re.search(r"\[Results\](.*?)\[/Results\]", output, re.DOTALL)
    assert block is not None
    assert len(block.group(1).encode()) > 4 * LINE_LIMIT  # far over one line's limit...
    assert max(len(line.encode()) for line in output.split("\n")) < LINE_LIMIT  # ...yet every line fits
    assert_list_is_last(output, results)
    # output_file is never written.
    assert subtitles.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["retranslate_config.json", "translated_ja.srt"]


def test_single_line_route_reads_after_the_final_results_marker(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": [task("translate-1", "你好朋友", "ko")], "model": "qwen2.5:32b"})
    results = single_line_route([*CLI, str(config)], cli_env(fake_clean), tmp_path)
    assert results == [
        {
            "task_id": "translate-1",
            "source": "你好朋友",
            "translation": translate("你好朋友", "ko"),
            "success": True,
            "elapsed": results[0]["elapsed"],
        }
    ]


def test_no_results_block_prints_only_the_list(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS[:1]})
    results, output = live_caller([*CLI, str(config), "--no-results-block"], cli_env(fake_clean), tmp_path)
    assert [r["task_id"] for r in results] == ["retrans-3"]
    assert "[Results]" not in output
    assert "FINAL RESULTS" not in output


# --- failed items ---------------------------------------------------------------------------------------------


def test_failed_items_are_left_out_unless_include_failed(fake_clean: FakeOllama, tmp_path: Path) -> None:
    # The model echoes the Chinese source for lines with 坏: a hard failure, never given to the editor.
    fake_clean.configure(styles_by_source={"坏": "chinese"})
    tasks = [task("retrans-1", "坏人来了", "韩语"), task("retrans-2", "大哥", "韩语")]
    config = write_config(tmp_path, {"tasks": tasks})
    results, _ = live_caller([*CLI, str(config)], cli_env(fake_clean), tmp_path)
    assert [r["task_id"] for r in results] == ["retrans-2"]

    results, _ = live_caller([*CLI, str(config), "--include-failed"], cli_env(fake_clean), tmp_path)
    failed, ok = results
    assert failed["task_id"] == "retrans-1"
    assert failed["translation"] is None  # never the source
    assert failed["success"] is False
    assert failed["error"]
    assert set(failed) == {"task_id", "source", "translation", "success", "elapsed", "error", "error_code"}
    assert ok["success"] is True


def test_exit_code_is_0_when_everything_failed_and_1_with_strict(fake_clean: FakeOllama, tmp_path: Path) -> None:
    fake_clean.configure(failures=[{"mode": "http_500", "count": -1}])
    config = write_config(tmp_path, {"tasks": LIVE_TASKS[:2]})
    code, output = run_live_caller([*CLI, str(config)], cli_env(fake_clean), tmp_path)
    assert code == 0
    assert live_caller_parse(output) == []
    code, output = run_live_caller([*CLI, str(config), "--strict"], cli_env(fake_clean), tmp_path)
    assert code == 1
    assert live_caller_parse(output) == []  # the list is still printed


def test_unknown_language_and_repeated_task_id_fail_alone(fake_clean: FakeOllama, tmp_path: Path) -> None:
    tasks = [
        task("retrans-1", "大哥", "klingon"),
        task("retrans-2", "是个小包工头", "韩语"),
        task("retrans-2", "你到底想干什么", "韩语"),
        task("retrans-3", "我们明天再说吧", "fr"),
    ]
    config = write_config(tmp_path, {"tasks": tasks})
    results, _ = live_caller([*CLI, str(config)], cli_env(fake_clean), tmp_path)
    assert [(r["task_id"], r["source"]) for r in results] == [
        ("retrans-2", "是个小包工头"),
        ("retrans-3", "我们明天再说吧"),
    ]
    assert all(r["success"] for r in results)

    results, _ = live_caller([*CLI, str(config), "--include-failed"], cli_env(fake_clean), tmp_path)
    assert [r["success"] for r in results] == [False, True, False, True]
    assert "klingon" in results[0]["error"]
    assert "repeated task_id" in results[2]["error"]
    assert results[0]["translation"] is None
    assert results[2]["translation"] is None
    # Neither reached the backend.
    assert {ask["source"] for ask in fake_clean.stats()["asks"]} == {"是个小包工头", "我们明天再说吧"}


def test_zero_tasks_print_an_empty_list(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": [], "num_processes": 1})
    results, output = live_caller([*CLI, str(config)], cli_env(fake_clean), tmp_path)
    assert results == []
    assert results_block_parse(output) == []
    assert single_line_route_parse(output) == []
    assert fake_clean.stats()["requests"] == []


# --- model choice ---------------------------------------------------------------------------------------------


def model_line(output: str) -> str:
    return next(line for line in lines_of(output) if line.startswith("model: "))


def test_the_configs_model_is_used_when_installed(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS[:1], "model": "qwen3:4b-instruct-2507-q4_K_M"})
    results, output = live_caller([*CLI, str(config)], cli_env(fake_clean), tmp_path)
    assert results[0]["success"]
    assert set(chat_models(fake_clean)) == {"qwen3:4b-instruct-2507-q4_K_M"}
    assert "the config's model" in model_line(output)


def test_a_missing_model_falls_back_to_the_services_choice(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS[:1], "model": "qwen3:14b"})
    results, output = live_caller([*CLI, str(config)], cli_env(fake_clean), tmp_path)
    assert results[0]["success"]
    assert set(chat_models(fake_clean)) == {"qwen3:4b-instruct-2507-q4_K_M"}
    line = model_line(output)
    assert line.startswith("model: qwen3:4b-instruct-2507-q4_K_M (the config's model qwen3:14b is not installed")


def test_the_services_choice_is_retranslate_model_when_set(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS[:1]})
    results, output = live_caller([*CLI, str(config)], cli_env(fake_clean, RETRANSLATE_MODEL="qwen2.5:32b"), tmp_path)
    assert results[0]["success"]
    assert set(chat_models(fake_clean)) == {"qwen2.5:32b"}
    assert "RETRANSLATE_MODEL" in model_line(output)


def test_no_model_fallback_uses_only_the_configs_model(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS[:1], "model": "qwen3:14b"})
    results, output = live_caller([*CLI, str(config), "--no-model-fallback"], cli_env(fake_clean), tmp_path)
    assert results == []
    assert chat_models(fake_clean) == []
    notice = next(line for line in lines_of(output) if line.startswith("no backend can translate"))
    assert "ollama pull qwen3:14b" in notice


# --- unload, deadline, backend down ---------------------------------------------------------------------------


def test_keep_loaded_skips_the_unload(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS[:1], "model": "qwen3:4b"})
    results, _ = live_caller([*CLI, str(config), "--keep-loaded"], cli_env(fake_clean), tmp_path)
    assert results[0]["success"]
    assert fake_clean.stats()["unloads"] == []
    live_caller([*CLI, str(config)], cli_env(fake_clean), tmp_path)
    assert fake_clean.stats()["unloads"] == ["qwen3:4b"]


def test_the_deadline_fails_unfinished_items_and_still_prints_the_list(fake_clean: FakeOllama, tmp_path: Path) -> None:
    fake_clean.configure(latency_s=30.0)
    config = write_config(tmp_path, {"tasks": LIVE_TASKS})
    started = time.monotonic()
    code, output = run_live_caller(
        [*CLI, str(config), "--deadline", "1", "--include-failed"], cli_env(fake_clean), tmp_path
    )
    elapsed = time.monotonic() - started
    assert code == 0, output
    results = live_caller_parse(output)
    assert [r["success"] for r in results] == [False] * 4
    assert all("deadline" in r["error"] and r["translation"] is None for r in results)
    assert all(r["error_code"] == "deadline" for r in results)
    assert elapsed < 15, elapsed  # the interpreter's start plus the 1 s deadline, not the model's 30 s
    assert fake_clean.stats()["unloads"] == ["qwen3:4b-instruct-2507-q4_K_M"]  # still unloaded, inside the deadline
    assert len(re.findall(r"^\[\d/4\] ✗ ", output, re.MULTILINE)) == 4


def test_no_backend_prints_one_line_and_an_empty_list(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS})
    env = cli_env(fake_clean, RETRANSLATE_OLLAMA_URL=f"http://127.0.0.1:{free_port()}")
    results, output = live_caller([*CLI, str(config)], env, tmp_path)
    assert results == []
    notices = [line for line in lines_of(output) if line.startswith("no backend can translate")]
    assert len(notices) == 1
    assert "Ollama is not reachable" in notices[0]


def test_nothing_follows_the_list_even_with_warnings_logged(fake_clean: FakeOllama, tmp_path: Path) -> None:
    # A thinking model that ignores "no thinking" and a backend that fails once: both log warnings. Python's
    # development mode shows every ResourceWarning and asyncio complaint there is.
    def thinking(answer: str) -> str:
        return '<think>\nShort and colloquial.\n</think>\n{"tr": "' + answer + '"}'

    answers = {"是个": "현장 소장이지", "大哥": "형님", "明天": "またあした", "到底": "What do you want"}
    fake_clean.configure(
        raw_by_source={k: thinking(v) for k, v in answers.items()}, failures=[{"mode": "reset", "count": 1}]
    )
    config = write_config(tmp_path, {"tasks": LIVE_TASKS, "model": "qwen3:4b"})
    env = cli_env(fake_clean, PYTHONDEVMODE="1", PYTHONWARNINGS="default")
    results, output = live_caller([*CLI, str(config)], env, tmp_path)
    assert "WARNING" in output  # warnings were logged...
    assert len(results) == 4
    assert_list_is_last(output, results)  # ...and none after the list
    assert results_block_parse(output) == results


def test_a_config_with_a_bom_is_read(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS[:2]}, bom=True)
    results, _ = live_caller([*CLI, str(config)], cli_env(fake_clean), tmp_path)
    assert [r["task_id"] for r in results] == ["retrans-3", "retrans-4"]


def test_an_unreadable_config_ends_like_every_failure(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = tmp_path / "broken.json"
    config.write_text('{"tasks": [', encoding="utf-8")
    code, output = run_live_caller([*CLI, str(config)], cli_env(fake_clean), tmp_path)
    assert code == 0  # one line saying why, then the list
    assert live_caller_parse(output) == []
    assert sum("cannot read the config" in line for line in lines_of(output)) == 1


def test_an_ollama_the_cli_started_is_left_running(fake_clean: FakeOllama, tmp_path: Path) -> None:
    binary = write_fake_ollama_executable(tmp_path)
    port = free_port()
    env = cli_env(
        fake_clean,
        RETRANSLATE_OLLAMA_URL=f"http://127.0.0.1:{port}",
        RETRANSLATE_AUTOSTART_OLLAMA="true",
        RETRANSLATE_OLLAMA_BINARY=str(binary),
    )
    config = write_config(tmp_path, {"tasks": LIVE_TASKS[:1]})
    try:
        results, _ = live_caller([*CLI, str(config)], env, tmp_path)
        assert results[0]["success"]
        # Still answering after the CLI exited, and the model was unloaded.
        stats = httpx.get(f"http://127.0.0.1:{port}/_fake/stats", timeout=10).json()
        assert stats["unloads"] == ["qwen3:4b-instruct-2507-q4_K_M"]
    finally:
        for proc in psutil.process_iter(["cmdline"]):
            if str(binary) in (proc.info.get("cmdline") or []):
                proc.terminate()
                proc.wait(10)


# --- --url: the same work through a running service ------------------------------------------------------------


def test_url_mode_sends_the_work_to_a_running_service(
    service_factory: ServiceFactory, fake_clean: FakeOllama, tmp_path: Path
) -> None:
    service = service_factory()
    tasks = [*LIVE_TASKS, task("retrans-9", "重复", "韩语"), task("retrans-10", "大哥", "klingon")]
    config = write_config(tmp_path, {"tasks": tasks, "num_processes": 1})
    command = [*CLI, str(config), "--url", service.url, "--include-failed"]
    results, output = live_caller(command, cli_env(fake_clean), tmp_path)
    assert [r["success"] for r in results] == [True, True, True, True, False, False]
    assert [r["translation"] for r in results[:4]] == [
        translate("是个小包工头", "ko"),
        translate("大哥", "ko"),
        translate("我们明天再说吧", "ja"),
        translate("你到底想干什么", "en"),
    ]
    assert len(re.findall(r"^\[\d/6\] [✓✗] ", output, re.MULTILINE)) == 6
    assert "qwen3:4b-instruct-2507-q4_K_M" in model_line(output)
    assert set(chat_models(fake_clean)) == {"qwen3:4b-instruct-2507-q4_K_M"}
    assert fake_clean.stats()["unloads"] == ["qwen3:4b-instruct-2507-q4_K_M"]
    assert_list_is_last(output, results)


def test_url_mode_when_the_service_cannot_translate(
    service_factory: ServiceFactory, fake_clean: FakeOllama, tmp_path: Path
) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS, "model": "qwen3:14b"})
    command = [*CLI, str(config), "--url", service_factory().url, "--no-model-fallback"]
    results, output = live_caller(command, cli_env(fake_clean), tmp_path)
    assert results == []
    notices = [line for line in lines_of(output) if line.startswith("no backend can translate: HTTP 503")]
    assert len(notices) == 1
    assert "ollama pull qwen3:14b" in notices[0]
    assert chat_models(fake_clean) == []


def test_url_mode_with_no_service_prints_one_line_and_an_empty_list(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS})
    command = [*CLI, str(config), "--url", f"http://127.0.0.1:{free_port()}"]
    results, output = live_caller(command, cli_env(fake_clean), tmp_path)
    assert results == []
    assert sum("did not answer" in line for line in lines_of(output)) == 1


def test_demo_model_results_never_reach_the_editor(
    fake_clean: FakeOllama, tmp_path: Path, demo_service: ServiceServer
) -> None:
    config = write_config(tmp_path, {"tasks": [task("retrans-1", "这是我的书", "英语")]})
    command = [*CLI, str(config), "--url", demo_service.url]
    env = cli_env(fake_clean, RETRANSLATE_API_KEY=DEMO_KEY)
    results, output = live_caller(command, env, tmp_path)
    assert results == []
    assert sum("demo model" in line for line in lines_of(output)) == 1

    code, output = run_live_caller([*command, "--allow-demo", "--include-failed"], env, tmp_path)
    assert code == 0
    results = live_caller_parse(output)
    assert len(results) == 1
    assert model_line(output).startswith("model: SmolLM2-135M-Instruct.Q4_1 (")
    # Whatever the tiny model said, it went through every check: a translation, or a failure with a code.
    assert results[0]["translation"] or results[0]["error_code"]
