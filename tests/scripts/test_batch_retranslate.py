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
from pathlib import Path

import pytest

from tests.conftest import DEMO_KEY, ServiceFactory
from tests.helpers import wait_ready
from tests.servers.fake_ollama import FakeOllama, translate
from tests.servers.service import ServiceServer, free_port
from tests.test_cli import (
    CLI,
    LIVE_TASKS,
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
    # progress lines, each with where its time went (the service's timings, via the service)
    progress = r"^\[\d/4\] ✓ retrans-\d+: .+ -> .+ \(\d+\.\d\ds; service_wait .+\)$"
    assert len(re.findall(progress, output, re.MULTILINE)) == 4
    assert any(line.startswith("总计: 4 个任务") for line in lines_of(output))
    assert "qwen3:4b-instruct-2507-q4_K_M" in model_line(output)
    chat_models = {r["body"]["model"] for r in fake_clean.stats()["requests"] if r["path"] == "/api/chat"}
    assert chat_models == {"qwen3:4b-instruct-2507-q4_K_M"}
    assert fake_clean.stats()["unloads"] == ["qwen3:4b-instruct-2507-q4_K_M"]


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


def test_demo_model_and_api_key(demo_service: ServiceServer, fake_clean: FakeOllama, tmp_path: Path) -> None:
    """The real service with the packaged demo model, behind RETRANSLATE_API_KEY."""
    config = write_config(tmp_path, {"tasks": [task("retrans-1", "这是我的书", "英语")]})
    env = env_for(demo_service.url, fake_clean, RETRANSLATE_API_KEY=DEMO_KEY, RETRANSLATE_PYTHON=str(tmp_path / "no"))
    results, output = live_caller(drop_in(str(config)), env, tmp_path)
    assert results == []
    assert sum("demo model" in line for line in lines_of(output)) == 1

    code, output = run_live_caller(drop_in(str(config), "--allow-demo", "--include-failed"), env, tmp_path)
    assert code == 0
    results = live_caller_parse(output)
    assert len(results) == 1
    assert model_line(output).startswith("model: SmolLM2-135M-Instruct.Q4_1 (")

    # Without the key: the service refuses, and the drop-in says so in one line.
    wrong = {**env, "RETRANSLATE_API_KEY": "wrong"}
    code, output = run_live_caller(drop_in(str(config)), wrong, tmp_path)
    assert code == 0
    assert live_caller_parse(output) == []
    assert sum("HTTP 401" in line and "RETRANSLATE_API_KEY" in line for line in lines_of(output)) == 1


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
    assert fake_clean.stats()["unloads"] == ["qwen3:4b-instruct-2507-q4_K_M"]
    # The CLI's exit code passes through.
    code, output = run_live_caller(drop_in(str(config), "--strict", "--keep-loaded"), env, tmp_path)
    assert code == 1
    assert len(live_caller_parse(output)) == 4
    assert fake_clean.stats()["unloads"] == ["qwen3:4b-instruct-2507-q4_K_M"]  # --keep-loaded reached the CLI


def checkout_copy(tmp_path: Path, *, venv: bool = True, protocol: bool = True) -> Path:
    """A checkout of our own in tmp_path: the drop-in, `app/` and (optionally) a `.venv` whose python is the
    service's interpreter. The drop-in finds everything relative to its own file."""
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "scripts" / SCRIPT.name)
    shutil.copytree(REPO / "app", root / "app", ignore=shutil.ignore_patterns("__pycache__"))
    if not protocol:
        (root / "app" / "editor_protocol.py").unlink()
    if venv:
        # A wrapper, not a symlink: a venv's python found through a symlink elsewhere is no longer in its venv.
        python = root / ".venv" / "bin" / "python"
        python.parent.mkdir(parents=True)
        python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        python.chmod(0o755)
    return root / "scripts" / SCRIPT.name


def test_service_down_finds_the_checkouts_venv(fake_clean: FakeOllama, tmp_path: Path) -> None:
    script = checkout_copy(tmp_path)
    config = write_config(tmp_path, {"tasks": LIVE_TASKS[:1]})
    env = env_for(dead_url(), fake_clean)
    env.pop("RETRANSLATE_PYTHON", None)
    results = single_line_route([*editor_python(), str(script), str(config)], env, tmp_path)
    assert [r["translation"] for r in results] == [translate("是个小包工头", "ko")]


def test_neither_prints_one_line_and_an_empty_list(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS})
    env = env_for(dead_url(), fake_clean, RETRANSLATE_PYTHON=str(tmp_path / "no-such-python"))
    code, output = run_live_caller(drop_in(str(config)), env, tmp_path)
    assert code == 0
    assert live_caller_parse(output) == []
    assert results_block_parse(output) == []
    notices = [line for line in lines_of(output) if line.startswith("not translated: no service answered")]
    assert len(notices) == 1
    for fix in ("RETRANSLATE_URL", "scripts/serve.py", "RETRANSLATE_PYTHON"):
        assert fix in notices[0]


def test_flags_are_the_clis(fake_clean: FakeOllama, tmp_path: Path) -> None:
    def flags(command: list[str]) -> set[str]:
        text = subprocess.run([*command, "--help"], capture_output=True, timeout=60, text=True).stdout
        return set(re.findall(r"--[a-z-]+", text))

    assert flags(drop_in()) == flags([sys.executable, "-m", "app.cli"])


# --- every failure path ends the same way: one line saying why and how to fix it, the list, exit 0 ----------


def test_a_fallback_python_without_our_dependencies(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS})
    # The base interpreter: a real Python, without fastapi, pydantic, ...
    base = getattr(sys, "_base_executable", None) or os.path.join(sys.base_prefix, "bin", "python3")
    env = env_for(dead_url(), fake_clean, RETRANSLATE_PYTHON=base)
    code, output = run_live_caller(drop_in(str(config), "--include-failed"), env, tmp_path)
    assert code == 0
    results = live_caller_parse(output)
    assert [r["error_code"] for r in results] == ["not_translated"] * 4
    notice = next(line for line in lines_of(output) if line.startswith("not translated:"))
    assert "RETRANSLATE_URL" in notice
    assert f"the in-process fallback ({base}) failed" in notice
    assert "ModuleNotFoundError" in notice


def test_the_protocol_module_missing(tmp_path: Path) -> None:
    script = checkout_copy(tmp_path, protocol=False)
    config = write_config(tmp_path, {"tasks": LIVE_TASKS})
    code, output = run_live_caller([*editor_python(), str(script), str(config)], dict(os.environ), tmp_path)
    assert code == 0
    assert live_caller_parse(output) == []
    assert lines_of(output)[0].startswith("not translated: cannot load")


def test_an_unreadable_config(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = tmp_path / "broken.json"
    config.write_text("not json", encoding="utf-8")
    code, output = run_live_caller(drop_in(str(config)), env_for(dead_url(), fake_clean), tmp_path)
    assert code == 0
    assert live_caller_parse(output) == []
    assert sum(line.startswith("cannot read the config") for line in lines_of(output)) == 1


def test_no_service_and_no_backend_names_both(fake_clean: FakeOllama, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tasks": LIVE_TASKS})
    url = dead_url()
    env = env_for(url, fake_clean, RETRANSLATE_PYTHON=sys.executable, RETRANSLATE_OLLAMA_URL=dead_url())
    code, output = run_live_caller(drop_in(str(config)), env, tmp_path)
    assert code == 0
    assert live_caller_parse(output) == []
    notices = [line for line in lines_of(output) if line.startswith("not translated:")]
    assert len(notices) == 1
    assert f"no service answered at {url} (RETRANSLATE_URL; start it with `python scripts/serve.py`" in notices[0]
    assert "no backend can translate in-process: " in notices[0]
    assert "Ollama is not reachable" in notices[0]


def test_a_service_killed_mid_run_names_the_lost_connection(fake_clean: FakeOllama, tmp_path: Path) -> None:
    """The service process dies one line into a batch: the unfinished lines say the connection was lost,
    not that a deadline passed."""
    fake_clean.configure(latency_s=0.3, parallel=1)
    port = free_port()
    env = {**cli_env(fake_clean), "RETRANSLATE_PORT": str(port), "RETRANSLATE_MAX_CONCURRENCY": "1"}
    service = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=REPO, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        tasks = [task(f"retrans-{i}", f"第{i}句台词", "韩语") for i in range(20)]
        config = write_config(tmp_path, {"tasks": tasks})
        runner = subprocess.Popen(
            drop_in(str(config), "--include-failed"),
            env={**cli_env(fake_clean), "RETRANSLATE_URL": url, "RETRANSLATE_PYTHON": str(tmp_path / "none")},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert runner.stdout is not None
        output = []
        for raw in runner.stdout:
            output.append(raw.decode("utf-8", "replace"))
            if raw.startswith(b"[1/20]"):  # one line has come back: now the service dies
                service.kill()
                break
        output.append(runner.stdout.read().decode("utf-8", "replace"))
        assert runner.wait(60) == 0
    finally:
        service.kill()
        service.wait(10)
    results = live_caller_parse("".join(output))
    lost = [r for r in results if not r["success"]]
    assert lost
    assert all(r["error_code"] == "service_lost" for r in lost)
    assert all(f"the connection to the service at {url} was lost" in r["error"] for r in lost)
    assert not any("deadline" in r["error"] for r in lost)


# --- parity: the drop-in with the service up, its fallback and the CLI give the same per-task outcome --------

PARITY_CONFIG = """{"tasks": [
  {"task_id": "good-1", "source": "是个小包工头", "target_language": "韩语"},
  {"task_id": "good-2", "source": "我们明天再说吧", "target_language": "ja", "max_length": 20},
  {"task_id": "good-3", "source": "你到底想干什么", "target_language": "英语", "max_length": 10.0},
  {"task_id": "nan", "source": "大哥", "target_language": "ko", "max_length": NaN},
  {"task_id": "string", "source": "大哥", "target_language": "ko", "max_length": "5"},
  {"task_id": "spaced", "source": "大哥", "target_language": "ko", "max_length": " 5"},
  {"task_id": "bool", "source": "大哥", "target_language": "ko", "max_length": true},
  {"task_id": "surrogate", "source": "\\ud800大哥", "target_language": "ko"},
  {"task_id": "klingon", "source": "大哥", "target_language": "klingon"},
  {"task_id": "good-1", "source": "重复的", "target_language": "ko"},
  {"task_id": "good-4", "source": "谢谢你的帮助", "target_language": "fr"}
], "num_processes": 1}"""


def test_the_same_config_gives_the_same_outcomes_three_ways(
    service: ServiceServer, fake_clean: FakeOllama, tmp_path: Path
) -> None:
    config = tmp_path / "parity.json"
    config.write_text(PARITY_CONFIG, encoding="utf-8")
    assert "\\ud800" in config.read_text(encoding="utf-8")  # the JSON escape of a lone surrogate
    flags = ["--include-failed", "--keep-loaded"]
    up = env_for(service.url, fake_clean, RETRANSLATE_PYTHON="/no")
    down = env_for(dead_url(), fake_clean, RETRANSLATE_PYTHON=sys.executable)
    ways = {
        "drop-in, service up": (drop_in(str(config), *flags), up),
        "drop-in, fallback": (drop_in(str(config), *flags), down),
        "python -m app.cli": ([*CLI, str(config), *flags], cli_env(fake_clean)),
    }
    lists = {}
    for way, (command, env) in ways.items():
        code, output = run_live_caller(command, env, tmp_path)
        assert code == 0, (way, output)
        lists[way] = [{k: v for k, v in r.items() if k != "elapsed"} for r in live_caller_parse(output)]
    first = lists["python -m app.cli"]
    assert [r["task_id"] for r in first] == [
        "good-1", "good-2", "good-3", "nan", "string", "spaced", "bool", "surrogate", "klingon", "good-1", "good-4",
    ]  # fmt: skip
    assert [r["success"] for r in first] == [True, True, True] + [False] * 7 + [True]
    assert {r["error_code"] for r in first if not r["success"]} == {"invalid_task"}
    for way, results in lists.items():
        assert results == first, way


MARKER_SOURCES = [
    "他说FINAL RESULTS (JSON)然后走了",
    "屏幕上写着FINAL RESULTS",
    "翻译结果（JSON）在这里",
    "[Results]开始了",
    "结束[/Results]了",
    "[第一行\n[第二行",
]


async def test_marker_text_in_tasks_does_not_confuse_the_editors_parsers(
    service: ServiceServer, fake_clean: FakeOllama, tmp_path: Path
) -> None:
    """Every marker an editor parser looks for, in task ids and sources (printed in the progress lines and in
    both lists): the five call sites' own parsing code reads back exactly the results."""
    tasks = [task(f"retrans-{i}", s, "ko") for i, s in enumerate(MARKER_SOURCES)]
    tasks.append(task("retrans-FINAL RESULTS (JSON)", "标记在编号里", "ko"))
    config = write_config(tmp_path, {"tasks": tasks, "model": "qwen2.5:32b"})
    env = env_for(service.url, fake_clean, RETRANSLATE_PYTHON=str(tmp_path / "no-python"))
    expected = [(t["task_id"], translate(t["source"], "ko")) for t in tasks]
    # The live caller and backend/main.py: the last line starting with `[`, to the end.
    results, output = live_caller(drop_in(str(config)), env, tmp_path)
    assert [(r["task_id"], r["translation"]) for r in results] == expected
    # The translation stage and the legacy batch route: the [Results] regex (and asyncio's 64 KiB lines).
    staged, _ = await translation_stage(drop_in(str(config)), env, tmp_path)
    assert [(r["task_id"], r["translation"]) for r in staged] == expected
    # /translate-text: after the FINAL RESULTS (JSON) line, skipping `=` lines.
    routed = single_line_route(drop_in(str(config)), env, tmp_path)
    assert [(r["task_id"], r["translation"]) for r in routed] == expected
    assert results_block_parse(output) == results


def test_a_config_over_the_services_max_tasks_goes_in_batches_in_order(
    service: ServiceServer, fake_clean: FakeOllama, tmp_path: Path
) -> None:
    """25,000 tasks against a service that takes 10,000 per request: three requests, every result, in order."""
    sources = [f"第{i}句" for i in range(25_000)]
    tasks = [task(f"retrans-{i}", s, "ko") for i, s in enumerate(sources)]
    config = write_config(tmp_path, {"tasks": tasks, "num_processes": 1})
    env = env_for(service.url, fake_clean, RETRANSLATE_PYTHON=str(tmp_path / "no-python"))
    results, _ = live_caller(drop_in(str(config)), env, tmp_path)
    assert [r["task_id"] for r in results] == [t["task_id"] for t in tasks]
    assert [r["translation"] for r in results] == [translate(s, "ko") for s in sources]
    streams = [r for r in fake_clean.stats()["requests"] if r["path"] == "/api/chat"]
    assert len(streams) == 25_000
    assert fake_clean.stats()["unloads"] == ["qwen3:4b-instruct-2507-q4_K_M"]  # once, after the last batch


def test_the_api_key_kept_only_in_the_checkouts_env_file(
    service_factory: ServiceFactory, fake_clean: FakeOllama, tmp_path: Path
) -> None:
    """The service reads its key from .env: the drop-in of the same checkout reads it there too (it used to
    send none, and the 401 came out as "no backend can translate")."""
    service = service_factory(api_key="key-in-dotenv")
    script = checkout_copy(tmp_path, venv=False)
    (script.parent.parent / ".env").write_text(
        '# the service\'s settings\nexport RETRANSLATE_API_KEY="key-in-dotenv"\nRETRANSLATE_CLI_DEADLINE_S=300 # s\n',
        encoding="utf-8",
    )
    config = write_config(tmp_path, {"tasks": LIVE_TASKS[:1]})
    env = env_for(service.url, fake_clean, RETRANSLATE_PYTHON=str(tmp_path / "no-python"))  # no key in it
    assert "RETRANSLATE_API_KEY" not in env
    results = single_line_route([*editor_python(), str(script), str(config)], env, tmp_path)
    assert [r["translation"] for r in results] == [translate("是个小包工头", "ko")]
