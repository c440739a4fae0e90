"""Defaults live in app/settings.py only: .env.example and the docs pages' tables are generated from it."""

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from app import dubbing, editor_protocol, errors
from app.settings import PROJECT_DIR, env_example, markdown_table
from tests.conftest import make_settings


def test_env_example_is_generated_from_settings() -> None:
    assert (PROJECT_DIR / ".env.example").read_text(encoding="utf-8") == env_example(), (
        "run: python -m app.settings --env-example > .env.example"
    )


# The generated regions of the docs pages: (page, region, what generates it). scripts/sync_docs.sh writes them.
GENERATED = [
    ("docs/settings.md", "settings", markdown_table),
    ("docs/errors.md", "error-codes", errors.markdown_table),
    ("docs/errors.md", "rules", dubbing.rules_table),
    ("docs/backends.md", "models", editor_protocol.models_table),
]


@pytest.mark.parametrize(("page", "region", "generate"), GENERATED, ids=[g[1] for g in GENERATED])
def test_the_docs_tables_are_generated_from_the_code(page: str, region: str, generate: Callable[[], str]) -> None:
    text = (PROJECT_DIR / page).read_text(encoding="utf-8")
    block = text.split(f"<!-- {region}:start -->\n", 1)[1].split(f"<!-- {region}:end -->", 1)[0]
    assert block == generate() + "\n", "regenerate with: bash scripts/sync_docs.sh"


BAD = [
    ("RETRANSLATE_MAX_CONCURRENCY", "abc", "a whole number from 1 to 512"),
    ("RETRANSLATE_PORT", "99999", "a whole number from 1 to 65535"),
    ("RETRANSLATE_LOG_LEVEL", "LOUD", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("RETRANSLATE_BACKEND", "gpu", "one of auto, ollama, openai, embedded"),
    ("RETRANSLATE_AUTOSTART_OLLAMA", "maybe", "true or false"),
    ("RETRANSLATE_OLLAMA_URL", "127.0.0.1:99999", "the port is not a number from 0 to 65535"),
    ("RETRANSLATE_OLLAMA_URL", "ftp://127.0.0.1", "OLLAMA_HOST form"),
]


@pytest.mark.parametrize("command", [["-m", "app"], ["-m", "app.cli", "config.json"]], ids=["service", "cli"])
@pytest.mark.parametrize(("name", "value", "allowed"), BAD, ids=[f"{b[0]}={b[1]}" for b in BAD])
def test_a_bad_setting_is_one_line_naming_the_variable_and_exit_2(
    tmp_path: Path, command: list[str], name: str, value: str, allowed: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRANSLATE_")}
    env[name] = value
    (tmp_path / "config.json").write_text('{"tasks": []}', encoding="utf-8")
    done = subprocess.run([sys.executable, *command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"retranslate: {name}={value!r} is not valid")
    assert allowed in lines[0]


def test_two_bad_settings_are_two_lines() -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RETRANSLATE_")},
           "RETRANSLATE_PORT": "0", "RETRANSLATE_TEMPERATURE": "hot"}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "app"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert sorted(line.split("=")[0] for line in done.stderr.splitlines()) == [
        "retranslate: RETRANSLATE_PORT",
        "retranslate: RETRANSLATE_TEMPERATURE",
    ]


def test_contract_names_and_defaults() -> None:
    s = make_settings()
    assert s.ollama_url == "http://127.0.0.1:11434"
    assert s.model is None  # the preference list decides
    assert s.max_concurrency == 4
    assert s.request_timeout_s == 60
    assert s.max_retries == 2
    assert s.max_reasks == 2
    assert s.keep_alive is None
    assert s.host == "127.0.0.1"
    assert s.port not in (8000, 11434)


def test_relative_model_path_resolves_against_the_project(tmp_path: Path) -> None:
    s = make_settings(embedded_model_path="models/x.gguf")
    assert s.embedded_model_path == PROJECT_DIR / "models" / "x.gguf"


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("127.0.0.1:18434", "http://127.0.0.1:18434"),  # OLLAMA_HOST's own form: no scheme
        ("0.0.0.0", "http://127.0.0.1:11434"),  # a bind-all address: reached through loopback
        ("0.0.0.0:18434", "http://127.0.0.1:18434"),
        (":11434", "http://127.0.0.1:11434"),
        ("ollama-box", "http://ollama-box:11434"),
        ("::", "http://[::1]:11434"),
        ("[::1]:18434", "http://[::1]:18434"),
        ("http://127.0.0.1:11434/", "http://127.0.0.1:11434"),
        ("https://ollama.example.com", "https://ollama.example.com"),
        ("", "http://127.0.0.1:11434"),
    ],
)
def test_ollama_url_takes_the_ollama_host_forms(given: str, used: str) -> None:
    assert make_settings(ollama_url=given).ollama_url == used


def run_app(**env: str) -> subprocess.CompletedProcess[str]:
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("RETRANSLATE_")}, **env}
    return subprocess.run([sys.executable, "-m", "app"], env=full, capture_output=True, text=True, timeout=60)


def test_the_openai_backend_without_its_url_stops_at_start_in_one_line() -> None:
    done = run_app(RETRANSLATE_BACKEND="openai")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "retranslate: RETRANSLATE_OPENAI_BASE_URL is not set: RETRANSLATE_BACKEND=openai needs the server's /v1 "
        "URL, e.g. http://127.0.0.1:8080/v1 (or set RETRANSLATE_BACKEND=auto for Ollama)"
    ]


def test_a_dotenv_that_is_not_utf8_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # The service in a directory of its own (its .env is the project directory's), with a .env saved as GBK.
    shutil.copytree(PROJECT_DIR / "app", tmp_path / "app")
    (tmp_path / ".env").write_bytes("# 设置\nRETRANSLATE_PORT=8642\n".encode("gbk"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRANSLATE_") and k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "app"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"retranslate: {tmp_path / '.env'} is not UTF-8")
    assert "save it as UTF-8" in line
