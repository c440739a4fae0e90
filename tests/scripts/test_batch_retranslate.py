"""scripts/batch_retranslate.py, the file LocalClip-Editor runs with its own Python: here a different
interpreter from the service's (Python 3.8 when installed), which cannot import any of our dependencies.
Service up (the work goes to /retranslate/stream), service down (the in-process CLI runs with the service's
interpreter), neither (one line and an empty list)."""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServiceFactory
from tests.servers.fake_ollama import FakeOllama, translate
from tests.servers.service import ServiceServer, free_port
from tests.test_cli import (
    LIVE_TASKS,
    DemoService,
    assert_list_is_last,
    cli_env,
    lines_of,
    live_caller,
    live_caller_parse,
    model_line,
    results_block_parse,
    run_live_caller,
    single_line_route,
    task,
    translation_stage,
    write_config,
)

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "batch_retranslate.py"


def _version_of(command: list[str]) -> tuple[int, int] | None:
    try:
        proc = subprocess.run(
            [*command, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    major, minor = proc.stdout.split()
    return int(major), int(minor)


@functools.cache
def editor_python() -> tuple[str, ...]:
    """Python 3.8 when one runs here (pyenv's shim may exist without a 3.8 selected: try its versions too),
    else the venv's base interpreter; always -I, so it sees none of the venv's packages."""
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = [shutil.which("python3.8"), *sorted(glob.glob(f"{pyenv_root}/versions/3.8*/bin/python3.8"))]
    for candidate in candidates:
        if candidate and _version_of([candidate, "-I"]) == (3, 8):
            return (candidate, "-I")
    base = getattr(sys, "_base_executable", None) or os.path.join(sys.base_prefix, "bin", "python3")
    return (base, "-I")


def drop_in(*flags: str) -> list[str]:
    return [*editor_python(), str(SCRIPT), *flags]


def env_for(url: str, fake: FakeOllama, **overrides: str) -> dict[str, str]:
    """The drop-in's environment: where the service is, and (for the fallback) the CLI's own settings."""
    return cli_env(fake, RETRANSLATE_URL=url, **overrides)


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def demo_service() -> Iterator[DemoService]:
    with DemoService() as stub:
        yield stub


@pytest.fixture
def service(service_factory: ServiceFactory, fake_clean: FakeOllama) -> ServiceServer:
    return service_factory()


def test_the_editors_interpreter_is_not_the_services() -> None:
    command = list(editor_python())
    assert os.path.realpath(command[0]) != os.path.realpath(sys.executable)
    assert subprocess.run([*command, "-c", "import fastapi"], capture_output=True, timeout=30).returncode != 0


# --- service up -----------------------------------------------------------------------------------------------


def test_service_up_live_caller(service: ServiceServer, fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS, "num_processes": 1})
    # No fallback possible: the service must have done the work.
    env = env_for(service.url, fake_clean, RETRANSLATE_PYTHON=str(tmp_path / "no-python"))
    results, output = live_caller(drop_in(str(config)), env, tmp_path)
    assert [(r["task_id"], r["translation"], r["success"]) for r in results] == [
        ("retrans-3", translate("是个小包工头", "ko"), True),
        ("retrans-4", translate("大哥", "ko"), True),
        ("retrans-7", translate("我们明天再说吧", "ja"), True),
        ("retrans-9", translate("你到底想干什么", "en"), True),
    ]
    assert_list_is_last(output, results)
    assert results_block_parse(output) == results
    assert len(re.findall(r"^\[\d/4\] ✓ retrans-\d+: .+ -> .+ \(\d+\.\d\ds\)$", output, re.MULTILINE)) == 4
    assert any(line.startswith("总计: 4 个任务") for line in lines_of(output))
    assert "qwen2.5:32b" in model_line(output)
    assert {r["body"]["model"] for r in fake_clean.stats()["requests"] if r["path"] == "/api/chat"} == {"qwen2.5:32b"}
    assert fake_clean.stats()["unloads"] == ["qwen2.5:32b"]


async def test_service_up_translation_stage(service: ServiceServer, fake_clean: FakeOllama, tmp_path: Path) -> None:
    subtitles = tmp_path / "translated_ja.srt"
    subtitles.write_bytes("1\r\n00:00:01,000 --> 00:00:02,000\r\nこんにちは\r\n".encode())
    before = subtitles.read_bytes()
    sources = [f"第{i}句台词说得太长了" for i in range(1500)]
    tasks = [task(f"item-{i}", s, "ja", max_length=int(len(s) * 3.0 * 0.8)) for i, s in enumerate(sources)]
    config = write_config(tmp_path, {"tasks": tasks, "model": "qwen2.5:32b", "output_file": str(subtitles)})
    env = env_for(service.url, fake_clean, RETRANSLATE_PYTHON=str(tmp_path / "no-python"))
    results, output = await translation_stage(drop_in(str(config)), env, tmp_path)
    assert [r["translation"] for r in results] == [translate(s, "ja") for s in sources]
    assert max(len(line.encode()) for line in output.split("\n")) < 64 * 1024
    assert_list_is_last(output, results)
    assert subtitles.read_bytes() == before


def test_service_up_single_line_route(service: ServiceServer, fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(
        tmp_path, {"tasks": [task("translate-1", "你好朋友", "ko")], "model": "qwen2.5:32b"}, bom=True
    )
    env = env_for(service.url, fake_clean, RETRANSLATE_PYTHON=str(tmp_path / "no-python"))
    results = single_line_route(drop_in(str(config)), env, tmp_path)
    assert [(r["task_id"], r["translation"]) for r in results] == [("translate-1", translate("你好朋友", "ko"))]


def test_service_up_bad_tasks_fail_alone(service: ServiceServer, fake_clean: FakeOllama, tmp_path: Path) -> None:
    # The service refuses a whole request for one bad task: the drop-in keeps those out and fails them itself.
    fake_clean.configure(styles_by_source={"坏": "chinese"})
    tasks = [
        task("retrans-1", "大哥", "klingon"),
        task("retrans-2", "是个小包工头", "韩语"),
        task("retrans-2", "你到底想干什么", "韩语"),
        task("retrans-3", "坏人来了", "韩语"),
        {"task_id": "retrans-4", "source": "  ", "target_language": "ko"},
        task("retrans-5", "我们明天再说吧", "法语"),
    ]
    config = write_config(tmp_path, {"tasks": tasks})
    env = env_for(service.url, fake_clean, RETRANSLATE_PYTHON=str(tmp_path / "no-python"))
    results, _ = live_caller(drop_in(str(config)), env, tmp_path)
    assert [r["task_id"] for r in results] == ["retrans-2", "retrans-5"]

    code, output = run_live_caller(drop_in(str(config), "--include-failed", "--strict"), env, tmp_path)
    assert code == 1
    results = live_caller_parse(output)
    assert [r["success"] for r in results] == [False, True, False, False, False, True]
    assert all(r["translation"] is None for r in results if not r["success"])
    assert "klingon" in results[0]["error"]
    assert "repeated task_id" in results[2]["error"]
    assert "blank" in results[4]["error"]
    assert {ask["source"] for ask in fake_clean.stats()["asks"]} == {"是个小包工头", "坏人来了", "我们明天再说吧"}


def test_service_up_without_the_model(service: ServiceServer, fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS, "model": "qwen3:14b"})
    env = env_for(service.url, fake_clean, RETRANSLATE_PYTHON=str(tmp_path / "no-python"))
    results, output = live_caller(drop_in(str(config), "--no-model-fallback"), env, tmp_path)
    assert results == []
    notices = [line for line in lines_of(output) if line.startswith("no backend can translate: HTTP 503")]
    assert len(notices) == 1
    assert "ollama pull qwen3:14b" in notices[0]


def test_service_up_zero_tasks(service: ServiceServer, fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": []})
    results, output = live_caller(drop_in(str(config)), env_for(service.url, fake_clean), tmp_path)
    assert results == []
    assert results_block_parse(output) == []


def test_demo_model_and_api_key(demo_service: DemoService, fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS[:1]})
    env = env_for(demo_service.url, fake_clean, RETRANSLATE_API_KEY="s3cret")
    results, output = live_caller(drop_in(str(config)), env, tmp_path)
    assert results == []
    assert sum("demo model" in line for line in lines_of(output)) == 1
    assert demo_service.posts == 0

    results, _ = live_caller(drop_in(str(config), "--allow-demo"), env, tmp_path)
    assert [r["translation"] for r in results] == ["demo"]
    assert demo_service.authorizations
    assert set(demo_service.authorizations) == {"Bearer s3cret"}


# --- service down: the in-process CLI with the service's interpreter -------------------------------------------


def test_service_down_runs_the_in_process_cli(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": [*LIVE_TASKS, task("retrans-10", "大哥", "klingon")]})
    env = env_for(dead_url(), fake_clean, RETRANSLATE_PYTHON=sys.executable)
    results, output = live_caller(drop_in(str(config)), env, tmp_path)
    assert [r["translation"] for r in results] == [
        translate("是个小包工头", "ko"),
        translate("大哥", "ko"),
        translate("我们明天再说吧", "ja"),
        translate("你到底想干什么", "en"),
    ]
    assert_list_is_last(output, results)
    assert results_block_parse(output) == results
    assert fake_clean.stats()["unloads"] == ["qwen2.5:32b"]
    # The CLI's exit code passes through.
    code, output = run_live_caller(drop_in(str(config), "--strict", "--keep-loaded"), env, tmp_path)
    assert code == 1
    assert len(live_caller_parse(output)) == 4
    assert fake_clean.stats()["unloads"] == ["qwen2.5:32b"]  # --keep-loaded reached the CLI


def test_service_down_finds_the_projects_venv(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS[:1]})
    env = env_for(dead_url(), fake_clean)
    results = single_line_route(drop_in(str(config)), env, tmp_path)
    assert [r["translation"] for r in results] == [translate("是个小包工头", "ko")]


def test_neither_prints_one_line_and_an_empty_list(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS})
    env = env_for(dead_url(), fake_clean, RETRANSLATE_PYTHON=str(tmp_path / "no-such-python"))
    code, output = run_live_caller(drop_in(str(config)), env, tmp_path)
    assert code == 0
    assert live_caller_parse(output) == []
    assert results_block_parse(output) == []
    notices = [line for line in lines_of(output) if "no service answers" in line]
    assert len(notices) == 1
    assert "RETRANSLATE_PYTHON" in notices[0]


def test_flags_are_the_clis(fake_clean: FakeOllama, tmp_path: Path) -> None:
    def flags(command: list[str]) -> set[str]:
        text = subprocess.run([*command, "--help"], capture_output=True, timeout=60, text=True).stdout
        return set(re.findall(r"--[a-z-]+", text))

    assert flags(drop_in()) == flags([sys.executable, "-m", "app.cli"])
