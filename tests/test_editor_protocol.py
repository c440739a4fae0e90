"""The editor's protocol (app/editor_protocol.py): pure functions, and the rule that it stays Python 3.8."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

from app import editor_protocol as protocol
from app import vocabulary
from app.languages import LANGUAGES, language_aliases

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", ["app/editor_protocol.py", "app/vocabulary.py", "scripts/batch_retranslate.py"])
def test_the_editors_files_parse_as_python_3_8(path: str) -> None:
    """The editor runs these with its own Python (3.8 and later)."""
    source = (ROOT / path).read_text(encoding="utf-8")
    ast.parse(source, filename=path, feature_version=(3, 8))


@pytest.mark.parametrize(
    ("path", "ours"), [("app/editor_protocol.py", {"app.vocabulary"}), ("app/vocabulary.py", set())]
)
def test_the_protocol_imports_only_the_standard_library(path: str, ours: set[str]) -> None:
    """The drop-in runs with the editor's Python, which has none of our dependencies: of `app`, the protocol
    imports only the shared vocabulary, which imports nothing of ours."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    modules = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    import sys

    assert {m for m in modules if m.split(".")[0] == "app"} == ours
    assert {m.split(".")[0] for m in modules if m not in ours} - {"__future__"} <= set(sys.stdlib_module_names)


def test_every_language_name_the_service_accepts_is_the_protocols() -> None:
    for lang in LANGUAGES:
        for alias in language_aliases(lang):
            assert vocabulary.language_code(alias) == lang.code


GOOD = {"task_id": "t", "source": "大哥", "target_language": "韩语"}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({}, None),
        ({"max_length": 5}, None),
        ({"max_length": 5.0}, None),  # int(x * 0.8) written by Python is an int; json may carry 5.0
        ({"max_length": None}, None),
        ({"max_length": "5"}, "max_length: must be a whole number"),
        ({"max_length": " 5"}, "max_length: must be a whole number"),
        ({"max_length": True}, "max_length: must be a whole number"),
        ({"max_length": math.nan}, "max_length: must be a whole number, not NaN"),
        ({"max_length": math.inf}, "max_length: must be a whole number, not Infinity"),
        ({"max_length": 5.5}, "max_length: must be a whole number"),
        ({"source": "\ud800大哥"}, "source: holds a lone surrogate"),
        ({"task_id": "t\udfff"}, "task_id: holds a lone surrogate"),
        ({"source": "   "}, "source: the text is blank"),
        ({"source": 5}, "source: must be a non-empty string"),
        ({"target_language": "klingon"}, "target_language: unsupported target_language 'klingon'"),
        ({"context": "前一句"}, "context: must be a list of strings"),
        ({"context": ["前一句", "\ud800"]}, "context: holds a lone surrogate"),
        ({"source": "长" * 4001}, "source: longer than 4000 characters"),
    ],
)
def test_one_rule_per_task(change: dict, problem: str | None) -> None:
    found = protocol.task_problem({**GOOD, **change}, set())
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(problem), found


def test_a_repeated_task_id_keeps_the_first() -> None:
    assert protocol.task_problem(GOOD, {"t"}) == "repeated task_id 't': only its first task is translated"


@pytest.mark.parametrize(
    ("config_model", "installed", "fallback", "expected"),
    [
        (None, ["qwen2.5:32b"], True, (None, "the config names no model: the service's choice")),
        ("qwen2.5:32b", ["qwen2.5:32b"], True, ("qwen2.5:32b", "the config's model")),
        ("QWEN2.5:32b", ["qwen2.5:32b"], True, ("qwen2.5:32b", "the config's model")),  # as installed
        ("qwen2.5", ["qwen2.5:latest"], True, ("qwen2.5:latest", "the config's model")),
        (
            "qwen2.5:32b",
            ["qwen3:4b"],
            True,
            (None, "the config's model qwen2.5:32b is not installed: the service's choice"),
        ),
        ("qwen2.5:32b", ["qwen3:4b"], False, ("qwen2.5:32b", "the config's model (--no-model-fallback)")),
        ("gpt-x", [], True, ("gpt-x", "the config's model")),  # a server that does not list its models
    ],
)
def test_the_model_choice(config_model, installed, fallback, expected) -> None:
    assert tuple(protocol.choose_model(config_model, installed, fallback)) == expected


def test_the_preference_list_puts_the_recommended_non_thinking_build_first() -> None:
    assert vocabulary.MODEL_PREFERENCE[0] == vocabulary.RECOMMENDED_MODEL == "qwen3:4b-instruct-2507-q4_K_M"
    assert vocabulary.MODEL_PREFERENCE.index("qwen3:4b") > vocabulary.MODEL_PREFERENCE.index("qwen3:4b-instruct")
    installed = ["qwen2.5:7b", "qwen3:4b", "qwen3:4b-instruct-2507-q4_K_M"]
    assert vocabulary.first_installed(vocabulary.MODEL_PREFERENCE, installed) == "qwen3:4b-instruct-2507-q4_K_M"
    assert vocabulary.first_installed(vocabulary.MODEL_PREFERENCE, ["qwen2.5:7b", "qwen3:4b"]) == "qwen3:4b"


def test_the_list_keeps_every_line_short_and_none_starting_with_a_bracket() -> None:
    items = [protocol.upstream_item({"task_id": f"t{i}", "source": "长" * 4000, "translation": "x\u2028[y]",
                                     "success": True, "elapsed": 0.1}) for i in range(3)]  # fmt: skip
    text = protocol.render_list(items)
    lines = text.split("\n")
    assert lines[0] == "["
    assert lines[-1] == "]"
    assert not any(line.startswith("[") for line in lines[1:])
    assert max(len(line.encode()) for line in text.splitlines()) < 64 * 1024
    assert json.loads(text) == [{**item, "translation": "x\u2028[y]"} for item in items]


def test_an_item_that_failed_never_carries_text_to_dub() -> None:
    item = protocol.upstream_item({"task_id": "t", "source": "大哥", "translation": "형님", "success": False,
                                   "elapsed": 0.1, "error": "x", "error_code": "rule_violation"})  # fmt: skip
    assert item["translation"] is None
    assert item["error_code"] == "rule_violation"
