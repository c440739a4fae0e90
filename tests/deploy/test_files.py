"""The deployment files, parsed and checked: no container engine runs here, so nothing else checks them.

deploy/compose.yml (service + LiteLLM + two Ollama hosts), deploy/litellm.yaml (the proxy's config, also run
for real by test_litellm.py) and the top-level docker-compose.yml (service + one Ollama).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILES = (DEPLOY / "compose.yml", ROOT / "docker-compose.yml")
# A compose interpolation of a variable (`${NAME}`, `${NAME:?message}`, `${NAME:-default}`), nothing else.
INTERPOLATION = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*)(:?[?-][^}]*)?\}$")


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the `- NAME=value` form
        env = dict(item.split("=", 1) for item in env)
    assert all(isinstance(v, str) for v in env.values()), f"quote every value (compose wants strings): {env}"
    return dict(env)


def _retranslate(compose: dict[str, Any]) -> dict[str, str]:
    return _env(compose["services"]["retranslate"])


def _ollama_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if str(svc.get("image", "")).startswith("ollama/")}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(DEPLOY / "compose.yml")


@pytest.fixture(scope="module")
def proxy_config() -> dict[str, Any]:
    return _load(DEPLOY / "litellm.yaml")


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_ports_are_published_on_loopback_only(path: Path) -> None:
    published = 0
    for name, service in _load(path)["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str), f"{name}: write ports as quoted 'HOST_IP:HOST:CONTAINER' strings"
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
            published += 1
    assert published == 1, "only the service is published (the hosts and the proxy stay inside the network)"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_retranslate_variable_is_a_setting(path: Path) -> None:
    fields = set(Settings.model_fields)
    for name, service in _load(path)["services"].items():
        for var in _env(service):
            if var.startswith("RETRANSLATE_"):
                assert var.removeprefix("RETRANSLATE_").lower() in fields, f"{name}: {var} is not a setting"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_bound_is_the_total_of_the_hosts_slots(path: Path) -> None:
    compose = _load(path)
    hosts = _ollama_services(compose)
    assert hosts, "no Ollama service"
    slots = [int(_env(svc)["OLLAMA_NUM_PARALLEL"]) for svc in hosts.values()]
    assert int(_retranslate(compose)["RETRANSLATE_MAX_CONCURRENCY"]) == sum(slots)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_service_is_built_from_this_repository(path: Path) -> None:
    build = _load(path)["services"]["retranslate"]["build"]
    context = build if isinstance(build, str) else build["context"]
    assert (path.parent / context / "Dockerfile").is_file()


def test_the_service_talks_to_the_proxy(compose: dict[str, Any], proxy_config: dict[str, Any]) -> None:
    env = _retranslate(compose)
    assert env["RETRANSLATE_BACKEND"] == "openai"
    url = urlsplit(env["RETRANSLATE_OPENAI_BASE_URL"])
    assert url.hostname in compose["services"], f"{url.hostname} is not a service of the compose file"
    assert url.path.rstrip("/") == "/v1"
    command = compose["services"][url.hostname]["command"]
    assert str(url.port) == command[command.index("--port") + 1]
    assert command[command.index("--config") + 1] == "/app/config.yaml"
    assert "./litellm.yaml:/app/config.yaml:ro" in compose["services"][url.hostname]["volumes"]
    # The service waits for the proxy, the proxy for nobody's health (a dead host must not keep it down).
    assert compose["services"]["retranslate"]["depends_on"][url.hostname]["condition"] == "service_healthy"
    # The service checks the Host header: callers inside the network reach it by its service name.
    allowed = [name.strip() for name in env["RETRANSLATE_ALLOWED_HOSTS"].split(",")]
    assert "retranslate" in allowed


def test_the_model_names_match(compose: dict[str, Any], proxy_config: dict[str, Any]) -> None:
    model = _retranslate(compose)["RETRANSLATE_MODEL"]
    entries = proxy_config["model_list"]
    assert {e["model_name"] for e in entries} == {model}
    # Every host serves that model through Ollama's native chat API.
    assert {e["litellm_params"]["model"] for e in entries} == {f"ollama_chat/{model}"}
    # ... and the top-level compose file names the same model for its single Ollama.
    assert _retranslate(_load(ROOT / "docker-compose.yml"))["RETRANSLATE_MODEL"] == model


def test_every_host_is_behind_the_proxy(compose: dict[str, Any], proxy_config: dict[str, Any]) -> None:
    bases = [urlsplit(e["litellm_params"]["api_base"]) for e in proxy_config["model_list"]]
    assert sorted(b.hostname or "" for b in bases) == sorted(_ollama_services(compose))
    assert {b.port for b in bases} == {11434}
    assert len(bases) >= 2


def test_the_router_fails_over(proxy_config: dict[str, Any]) -> None:
    router = proxy_config["router_settings"]
    # Without weighted failover a host dying mid-batch lost 5-14 of 40 lines (README, More than one machine).
    assert router["enable_weighted_failover"] is True
    assert router["routing_strategy"] == "simple-shuffle"
    assert router["num_retries"] >= 1
    assert router["cooldown_time"] > 0


def test_a_host_is_given_up_within_one_call_of_the_service(
    compose: dict[str, Any], proxy_config: dict[str, Any]
) -> None:
    per_call = float(_retranslate(compose)["RETRANSLATE_REQUEST_TIMEOUT_S"])
    for entry in proxy_config["model_list"]:
        assert float(entry["litellm_params"]["timeout"]) < per_call / 2


def test_the_master_key_is_not_written_down(compose: dict[str, Any], proxy_config: dict[str, Any]) -> None:
    assert proxy_config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    proxy_env = _env(compose["services"]["litellm"])
    for value in (proxy_env["LITELLM_MASTER_KEY"], _retranslate(compose)["RETRANSLATE_OPENAI_API_KEY"]):
        match = INTERPOLATION.match(value)
        assert match, f"a literal key in deploy/compose.yml: {value!r}"
        assert match.group(1) == "LITELLM_MASTER_KEY"
    # Nothing that looks like a key anywhere in the two files.
    for path in (DEPLOY / "compose.yml", DEPLOY / "litellm.yaml"):
        assert not re.search(r"\bsk-[A-Za-z0-9]{8,}", path.read_text()), f"{path.name} holds a key"
