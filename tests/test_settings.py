"""Defaults live in app/settings.py only: .env.example and the README table are generated from it."""

from pathlib import Path

from app import dubbing, errors
from app.settings import PROJECT_DIR, env_example, markdown_table
from tests.conftest import make_settings


def test_env_example_is_generated_from_settings() -> None:
    assert (PROJECT_DIR / ".env.example").read_text(encoding="utf-8") == env_example(), (
        "run: python -m app.settings --env-example > .env.example"
    )


def test_readme_settings_table_is_generated_from_settings() -> None:
    readme = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- settings:start -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert block == markdown_table() + "\n", "regenerate the table with: python -m app.settings --markdown"


def test_readme_error_code_table_is_generated_from_the_policy_table() -> None:
    readme = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- error-codes:start -->\n", 1)[1].split("<!-- error-codes:end -->", 1)[0]
    assert block == errors.markdown_table() + "\n", "regenerate with: bash scripts/sync_docs.sh"


def test_readme_rule_table_is_generated_from_the_rules() -> None:
    readme = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- rules:start -->\n", 1)[1].split("<!-- rules:end -->", 1)[0]
    assert block == dubbing.rules_table() + "\n", "regenerate with: bash scripts/sync_docs.sh"


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
