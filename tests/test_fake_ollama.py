"""The fake Ollama against Ollama's documented/implemented response shapes, and its test knobs.

Shapes and texts come from ollama/ollama (docs/api.md, api/types.go, server/routes.go,
openai/openai.go, middleware/openai.go at the tags named in tests/servers/fake_ollama.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers.fake_ollama import BUSY_MESSAGE, FakeOllama, translate

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
DETAILS_KEYS = {"parent_model", "format", "family", "families", "parameter_size", "quantization_level"}
METRICS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)
MODEL = "qwen3:4b-instruct-2507-q4_K_M"  # no thinking capability
THINKER = "qwen3:4b"
SOURCE = "你好世界朋友"
SCHEMA = {"type": "object", "properties": {"tr": {"type": "string"}}, "required": ["tr"]}


def prompt(source: str = SOURCE, lang: str = "en", name: str = "English") -> str:
    return f"Target language: {name} ({lang})\n<source>\n{source}\n</source>"


def chat_body(source: str = SOURCE, model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt(source)}], "stream": False, **extra}


def v1_body(source: str = SOURCE, model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt(source)}], **extra}


def expected(source: str = SOURCE) -> str:
    return json.dumps({"tr": translate(source, "en")}, ensure_ascii=False)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOllama]:
    fake = FakeOllama(port=0).start()
    yield fake
    fake.stop()


@pytest.fixture
def ollama(server: FakeOllama) -> FakeOllama:
    server.reset(config=True)
    server.configure(pull_step_s=0.0)
    return server


@pytest.fixture(scope="module")
def http(server: FakeOllama) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10.0, trust_env=False) as c:
        yield c


@pytest.fixture
def client(http: httpx.Client, ollama: FakeOllama) -> httpx.Client:
    """The module's client, against the freshly reset fake."""
    return http


def ndjson(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[httpx.Response, list[dict[str, Any]]]:
    with client.stream("POST", path, json=body) as resp:
        resp.read()
    return resp, [json.loads(line) for line in resp.text.splitlines() if line]


def sse(client: httpx.Client, body: dict[str, Any]) -> tuple[httpx.Response, list[Any]]:
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as resp:
        resp.read()
    events = [line[len("data: ") :] for line in resp.text.split("\n\n") if line.startswith("data: ")]
    return resp, [e if e == "[DONE]" else json.loads(e) for e in events]


# ---------------------------------------------------------------- simple endpoints


def test_version(client: httpx.Client) -> None:
    resp = client.get("/api/version")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json; charset=utf-8"
    assert resp.json() == {"version": "0.13.0"}


def test_root_and_unknown_path(client: httpx.Client) -> None:
    assert client.get("/").text == "Ollama is running"
    assert client.get("/api/nope").status_code == 404


def test_tags_shape_and_capabilities_by_version(client: httpx.Client, ollama: FakeOllama) -> None:
    models = client.get("/api/tags").json()["models"]
    assert {m["name"] for m in models} >= {MODEL, THINKER}
    for m in models:
        assert set(m) == {"name", "model", "modified_at", "size", "digest", "details"}  # 0.13.0
        assert m["name"] == m["model"]
        assert RFC3339.match(m["modified_at"])
        assert isinstance(m["size"], int)
        assert re.fullmatch(r"[0-9a-f]{64}", m["digest"])
        assert set(m["details"]) == DETAILS_KEYS
        assert isinstance(m["details"]["families"], list)
    ollama.configure(version="0.30.0")
    models = client.get("/api/tags").json()["models"]
    assert all(isinstance(m["capabilities"], list) for m in models)


def test_show_shape(client: httpx.Client, ollama: FakeOllama) -> None:
    body = client.post("/api/show", json={"model": THINKER}).json()
    for key in ("modelfile", "parameters", "template"):
        assert isinstance(body[key], str)
    assert set(body["details"]) == DETAILS_KEYS
    assert isinstance(body["model_info"], dict)
    assert "general.architecture" in body["model_info"]
    assert {"name", "type", "shape"} == set(body["tensors"][0])
    assert body["capabilities"] == ["completion", "thinking", "tools"]
    assert RFC3339.match(body["modified_at"])
    # the deprecated "name" field still works
    assert client.post("/api/show", json={"name": MODEL}).json()["capabilities"] == ["completion", "tools"]
    ollama.configure(version="0.6.3")  # ShowResponse.Capabilities is from 0.6.4, tensors from 0.7.0
    old = client.post("/api/show", json={"model": THINKER}).json()
    assert "capabilities" not in old
    assert "tensors" not in old


def test_show_errors(client: httpx.Client, ollama: FakeOllama) -> None:
    resp = client.post("/api/show", json={"model": "Missing"})
    assert (resp.status_code, resp.json()) == (404, {"error": "model 'Missing' not found"})
    ollama.configure(version="0.30.0")  # DisplayShortest since 0.30.0
    assert client.post("/api/show", json={"model": "Missing"}).json() == {"error": "model 'Missing:latest' not found"}
    resp = client.post("/api/show", json={})
    assert (resp.status_code, resp.json()) == (400, {"error": "model is required"})
    resp = client.post("/api/show")
    assert (resp.status_code, resp.json()) == (400, {"error": "missing request body"})
    resp = client.post("/api/show", content=b"nope")
    assert (resp.status_code, resp.json()) == (400, {"error": "invalid character 'n' looking for beginning of value"})


def test_load_ps_unload(client: httpx.Client, ollama: FakeOllama) -> None:
    assert client.get("/api/ps").json() == {"models": []}
    loaded = client.post("/api/chat", json={"model": MODEL, "messages": []}).json()
    assert set(loaded) == {"model", "created_at", "message", "done", "done_reason"}
    assert loaded["message"] == {"role": "assistant", "content": ""}
    assert (loaded["done"], loaded["done_reason"]) == (True, "load")
    (entry,) = client.get("/api/ps").json()["models"]
    assert set(entry) == {"name", "model", "size", "digest", "details", "expires_at", "size_vram", "context_length"}
    assert entry["name"] == MODEL
    assert RFC3339.match(entry["expires_at"])
    assert isinstance(entry["size_vram"], int)
    assert isinstance(entry["context_length"], int)
    unloaded = client.post("/api/generate", json={"model": MODEL, "keep_alive": 0}).json()
    assert set(unloaded) == {"model", "created_at", "response", "done", "done_reason"}
    assert (unloaded["response"], unloaded["done"], unloaded["done_reason"]) == ("", True, "unload")
    assert client.get("/api/ps").json() == {"models": []}
    ollama.configure(version="0.9.6")  # ProcessModelResponse.ContextLength is from 0.10.0
    client.post("/api/generate", json={"model": MODEL})
    assert "context_length" not in client.get("/api/ps").json()["models"][0]


def test_pull_stream_and_not_stream(client: httpx.Client, ollama: FakeOllama) -> None:
    resp, lines = ndjson(client, "/api/pull", {"model": "llama3.2"})
    assert resp.headers["content-type"] == "application/x-ndjson"
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[-1] == {"status": "success"}
    for line in lines:
        assert set(line) <= {"status", "digest", "total", "completed"}
        assert "completed" not in line or isinstance(line["completed"], int)
    resp = client.post("/api/pull", json={"model": "phi3", "stream": False})
    assert (resp.status_code, resp.json()) == (200, {"status": "success"})
    assert resp.headers["content-type"] == "application/json"  # waitForStream
    ollama.configure(pullable={})
    resp = client.post("/api/pull", json={"model": "nope", "stream": False})
    assert (resp.status_code, resp.json()) == (500, {"error": "pull model manifest: file does not exist"})
    resp, lines = ndjson(client, "/api/pull", {"model": "nope"})
    assert resp.status_code == 200
    assert lines[-1] == {"error": "pull model manifest: file does not exist"}


# ---------------------------------------------------------------- native chat / generate


def test_chat_not_streaming_shape(client: httpx.Client) -> None:
    resp = client.post("/api/chat", json=chat_body())
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json; charset=utf-8"
    body = resp.json()
    assert set(body) == {"model", "created_at", "message", "done", "done_reason", *METRICS}
    assert body["model"] == MODEL
    assert RFC3339.match(body["created_at"])
    assert body["message"] == {"role": "assistant", "content": expected()}
    assert (body["done"], body["done_reason"]) == (True, "stop")
    assert all(isinstance(body[k], int) and body[k] > 0 for k in METRICS)


def test_chat_streaming_shape(client: httpx.Client) -> None:
    resp, lines = ndjson(client, "/api/chat", {**chat_body(), "stream": True})
    assert resp.headers["content-type"] == "application/x-ndjson"
    *parts, final = lines
    assert parts
    for part in parts:
        assert set(part) == {"model", "created_at", "message", "done"}
        assert part["done"] is False
    assert "".join(p["message"]["content"] for p in parts) == expected()
    assert set(final) == {"model", "created_at", "message", "done", "done_reason", *METRICS}
    assert final["message"] == {"role": "assistant", "content": ""}
    assert (final["done"], final["done_reason"]) == (True, "stop")


def test_chat_thinking_field_and_length(client: httpx.Client, ollama: FakeOllama) -> None:
    ollama.configure(style="thinking_field")
    msg = client.post("/api/chat", json=chat_body(model=THINKER)).json()["message"]
    assert msg["content"] == expected()
    assert isinstance(msg["thinking"], str)
    assert msg["thinking"]
    body = client.post("/api/chat", json=chat_body(model=THINKER, options={"num_predict": 5})).json()
    assert body["done_reason"] == "length"


def test_generate_shape(client: httpx.Client) -> None:
    body = client.post("/api/generate", json={"model": MODEL, "prompt": prompt(), "stream": False}).json()
    assert set(body) == {"model", "created_at", "response", "done", "done_reason", "context", *METRICS}
    assert body["response"] == expected()
    assert isinstance(body["context"], list)


def test_native_errors(client: httpx.Client, ollama: FakeOllama) -> None:
    resp = client.post("/api/chat", json=chat_body(model="nope"))
    assert (resp.status_code, resp.json()) == (404, {"error": "model 'nope' not found"})
    ollama.configure(not_found_style="legacy")
    assert client.post("/api/chat", json=chat_body(model="nope")).json() == {
        "error": 'model "nope" not found, try pulling it first'
    }
    resp = client.post("/api/chat", json=chat_body(model=""))
    assert (resp.status_code, resp.json()) == (400, {"error": "model is required"})
    resp = client.post("/api/chat", json=chat_body(think=True))
    assert (resp.status_code, resp.json()) == (400, {"error": f'"{MODEL}" does not support thinking'})
    resp = client.post("/api/chat", json=chat_body(model=THINKER, think="max"))  # "max" is from 0.22.0
    assert resp.status_code == 400
    assert resp.json() == {"error": 'invalid think value: "max" (must be "high", "medium", "low", true, or false)'}
    resp = client.post("/api/chat", json=chat_body(keep_alive="5x"))
    assert (resp.status_code, resp.json()) == (400, {"error": 'time: unknown unit "x" in duration "5x"'})
    resp = client.post("/api/chat", json=[1])
    assert resp.json() == {"error": "json: cannot unmarshal array into Go value of type api.ChatRequest"}


def test_busy_503(client: httpx.Client, ollama: FakeOllama) -> None:
    ollama.configure(failures=[{"mode": "busy_503", "count": 1}])
    resp = client.post("/api/chat", json=chat_body())
    assert (resp.status_code, resp.json()) == (503, {"error": BUSY_MESSAGE})
    assert BUSY_MESSAGE == "server busy, please try again.  maximum pending requests exceeded"
    assert client.post("/api/chat", json=chat_body()).status_code == 200


# ---------------------------------------------------------------- format (structured outputs)


@pytest.mark.parametrize("fmt", ["json", SCHEMA, {}])
@pytest.mark.parametrize("style", ["plain", "quoted", "fenced", "think_tags"])
def test_format_turns_non_json_styles_into_the_object(
    client: httpx.Client, ollama: FakeOllama, style: str, fmt: Any
) -> None:
    ollama.configure(style=style)
    free = client.post("/api/chat", json=chat_body()).json()["message"]["content"]
    assert free != expected()
    constrained = client.post("/api/chat", json=chat_body(format=fmt)).json()["message"]
    assert constrained == {"role": "assistant", "content": expected()}
    generated = client.post("/api/generate", json={"model": MODEL, "prompt": prompt(), "stream": False, "format": fmt})
    assert generated.json()["response"] == expected()


@pytest.mark.parametrize(
    ("style", "content"),
    [
        ("placeholder", '{"tr": "translation"}'),
        ("empty", ""),
        ("echo", json.dumps({"tr": SOURCE}, ensure_ascii=False)),
        ("cutoff", expected()[: len(expected()) // 2]),
    ],
)
def test_format_keeps_json_valid_but_bad_styles(
    client: httpx.Client, ollama: FakeOllama, style: str, content: str
) -> None:
    ollama.configure(style=style)
    assert client.post("/api/chat", json=chat_body(format=SCHEMA)).json()["message"]["content"] == content


def test_format_null_and_empty_mean_unset(client: httpx.Client, ollama: FakeOllama) -> None:
    ollama.configure(style="plain")
    for fmt in (None, ""):
        assert client.post("/api/chat", json=chat_body(format=fmt)).json()["message"]["content"] != expected()


def test_format_invalid_value_is_a_500_since_0_5_3(client: httpx.Client, ollama: FakeOllama) -> None:
    resp = client.post("/api/chat", json=chat_body(format="xml"))
    assert resp.status_code == 500
    assert resp.json() == {"error": 'invalid format: "\\"xml\\""; expected "json" or a valid JSON Schema object'}
    ollama.configure(version="0.5.2", style="plain")  # only logged: unconstrained answer
    body = client.post("/api/chat", json=chat_body(format="xml")).json()
    assert body["message"]["content"] == translate(SOURCE, "en")


@pytest.mark.parametrize(("path", "struct"), [("/api/chat", "ChatRequest"), ("/api/generate", "GenerateRequest")])
def test_format_object_before_0_5_0_is_a_bind_error(
    client: httpx.Client, ollama: FakeOllama, path: str, struct: str
) -> None:
    ollama.configure(version="0.4.7")
    body = chat_body(format=SCHEMA) if path == "/api/chat" else {"model": MODEL, "prompt": prompt(), "format": SCHEMA}
    resp = client.post(path, json=body)
    assert resp.status_code == 400
    assert resp.json() == {
        "error": f"json: cannot unmarshal object into Go struct field {struct}.format of type string"
    }
    # a bind error comes before the model lookup
    resp = client.post(path, json={**body, "model": "nope"})
    assert resp.status_code == 400
    # "json" still works
    ollama.configure(style="plain")
    ok = client.post(path, json={**body, "format": "json", "stream": False}).json()
    assert ok.get("response", ok.get("message", {}).get("content")) == expected()


def test_format_other_string_before_0_5_0(client: httpx.Client, ollama: FakeOllama) -> None:
    ollama.configure(version="0.4.7", style="plain")
    resp = client.post("/api/generate", json={"model": MODEL, "prompt": prompt(), "format": "xml"})
    assert (resp.status_code, resp.json()) == (400, {"error": 'format must be empty or "json"'})
    # ChatHandler never checked it: unconstrained
    assert client.post("/api/chat", json=chat_body(format="xml")).json()["message"]["content"] != expected()


def test_reject_format_knob(client: httpx.Client, ollama: FakeOllama) -> None:
    ollama.configure(reject_format=True, style="plain")
    resp = client.post("/api/chat", json=chat_body(format=SCHEMA))
    assert resp.status_code == 400
    assert resp.json() == {
        "error": "json: cannot unmarshal object into Go struct field ChatRequest.format of type string"
    }
    assert client.post("/api/chat", json=chat_body(format="json")).json()["message"]["content"] == expected()


# ---------------------------------------------------------------- /v1


def test_v1_models_shape(client: httpx.Client, ollama: FakeOllama) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    for entry in body["data"]:
        assert set(entry) == {"id", "object", "created", "owned_by"}
        assert (entry["object"], entry["owned_by"]) == ("model", "library")
        assert isinstance(entry["created"], int)
    ollama.configure(models={})
    assert client.get("/v1/models").json() == {"object": "list", "data": None}


def test_v1_completion_shape(client: httpx.Client) -> None:
    resp = client.post("/v1/chat/completions", json=v1_body())
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"id", "object", "created", "model", "system_fingerprint", "choices", "usage"}
    assert re.fullmatch(r"chatcmpl-\d{1,3}", body["id"])
    assert (body["object"], body["system_fingerprint"]) == ("chat.completion", "fp_ollama")
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": expected()}, "finish_reason": "stop"}
    ]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_v1_stream_shape_by_version(client: httpx.Client, ollama: FakeOllama) -> None:
    resp, events = sse(client, v1_body(stream_options={"include_usage": True}))
    assert resp.headers["content-type"] == "text/event-stream"
    *chunks, usage, done = events
    assert done == "[DONE]"
    assert usage["choices"] == []
    assert set(usage["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    # 0.13.0: every delta has role and content; the last carries the finish_reason
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["choices"][0]["delta"]["role"] == "assistant" for c in chunks)
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {"role": "assistant", "content": ""},
        "finish_reason": "stop",
    }
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == expected()
    ollama.configure(version="0.33.0")  # openai.Delta: omitempty, separate finish chunk
    _, events = sse(client, v1_body())
    *chunks, done = events
    assert "role" in chunks[0]["choices"][0]["delta"]
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}


def test_v1_error_types_by_version(client: httpx.Client, ollama: FakeOllama) -> None:
    def error(body: Any) -> tuple[int, dict[str, Any]]:
        resp = client.post("/v1/chat/completions", json=body)
        assert resp.headers["content-type"] == "application/json"
        return resp.status_code, resp.json()["error"]

    status, err = error(v1_body(model="nope"))
    assert status == 404
    # writeError typed every handler error api_error before 0.18.0
    assert err == {"message": "model 'nope' not found", "type": "api_error", "param": None, "code": None}
    status, err = error({"model": MODEL, "messages": []})  # the middleware's own: typed by status
    assert (status, err["type"], err["message"]) == (400, "invalid_request_error", "[] is too short - 'messages'")
    status, err = error(v1_body(reasoning_effort="max"))
    assert (status, err["type"]) == (400, "invalid_request_error")
    assert err["message"] == 'invalid reasoning value: \'max\' (must be "high", "medium", "low", or "none")'
    ollama.configure(version="0.18.0")
    assert error(v1_body(model="nope")) == (
        404,
        {**err, "message": "model 'nope' not found", "type": "not_found_error"},
    )
    ollama.configure(version="0.33.0")
    assert client.post("/v1/chat/completions", json=v1_body(model=THINKER, reasoning_effort="xhigh")).status_code == 200


@pytest.mark.parametrize(
    "response_format",
    [{"type": "json_object"}, {"type": "json_schema", "json_schema": {"name": "tr", "schema": SCHEMA}}],
)
def test_v1_response_format_constrains(client: httpx.Client, ollama: FakeOllama, response_format: Any) -> None:
    ollama.configure(style="fenced")
    free = client.post("/v1/chat/completions", json=v1_body()).json()
    assert free["choices"][0]["message"]["content"] != expected()
    body = client.post("/v1/chat/completions", json=v1_body(response_format=response_format)).json()
    assert body["choices"][0]["message"]["content"] == expected()
    _, events = sse(client, v1_body(response_format=response_format))
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == expected()


def test_v1_response_format_by_version_and_type(client: httpx.Client, ollama: FakeOllama) -> None:
    ollama.configure(style="plain")
    text = {"type": "text"}
    assert client.post("/v1/chat/completions", json=v1_body(response_format=text)).json()["choices"][0]["message"][
        "content"
    ] == translate(SOURCE, "en")
    ollama.configure(version="0.4.7")  # ResponseFormat had only "type": json_schema is ignored
    schema = {"type": "json_schema", "json_schema": {"name": "tr", "schema": SCHEMA}}
    body = client.post("/v1/chat/completions", json=v1_body(response_format=schema)).json()
    assert body["choices"][0]["message"]["content"] == translate(SOURCE, "en")
    body = client.post("/v1/chat/completions", json=v1_body(response_format={"type": "json_object"})).json()
    assert body["choices"][0]["message"]["content"] == expected()


def test_v1_response_format_not_an_object(client: httpx.Client) -> None:
    resp = client.post("/v1/chat/completions", json=v1_body(response_format="json"))
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == (
        "json: cannot unmarshal string into Go struct field ChatCompletionRequest.response_format"
        " of type openai.ResponseFormat"
    )


def test_reject_response_format_knob(client: httpx.Client, ollama: FakeOllama) -> None:
    ollama.configure(reject_response_format=True)
    resp = client.post("/v1/chat/completions", json=v1_body(response_format={"type": "json_object"}))
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["param"] == "response_format"
    assert error["type"] == "invalid_request_error"
    assert "response_format" in error["message"]
    assert client.post("/v1/chat/completions", json=v1_body()).status_code == 200


# ---------------------------------------------------------------- raw answers and padding


def test_raw_by_source_is_verbatim(client: httpx.Client, ollama: FakeOllama) -> None:
    raw = 'not json at all "quoted" \\ \n'
    ollama.configure(raw_by_source={"你好": raw}, style="plain")
    # no format constraint, no cap, no style
    body = client.post("/api/chat", json=chat_body(format=SCHEMA, options={"num_predict": 3})).json()
    assert body["message"]["content"] == raw
    assert body["done_reason"] == "stop"
    _, lines = ndjson(client, "/api/chat", {**chat_body(), "stream": True})
    assert "".join(line["message"]["content"] for line in lines) == raw
    v1 = client.post("/v1/chat/completions", json=v1_body(max_tokens=2)).json()
    assert v1["choices"][0]["message"]["content"] == raw
    # other sources are not affected
    assert client.post("/api/chat", json=chat_body(source="山水")).json()["message"]["content"] == translate(
        "山水", "en"
    )


# the JSON escape of a lone surrogate as text; a real lone surrogate; two that make no pair (low, high)
@pytest.mark.parametrize("raw", ['{"tr": "\\ud800"}', '{"tr": "\ud800"}', "\udfff\ud800 x"])
def test_raw_by_source_surrogates(client: httpx.Client, ollama: FakeOllama, raw: str) -> None:
    ollama.configure(raw_by_source={SOURCE: raw})
    resp = client.post("/api/chat", json=chat_body())
    assert resp.status_code == 200
    assert json.loads(resp.content)["message"]["content"] == raw
    if "\ud800" in raw:
        assert b"\\ud800" in resp.content  # sent as a JSON escape: valid UTF-8 on the wire
    resp.content.decode("utf-8")
    _, lines = ndjson(client, "/api/chat", {**chat_body(), "stream": True})
    assert "".join(line["message"]["content"] for line in lines) == raw
    v1 = client.post("/v1/chat/completions", json=v1_body())
    assert json.loads(v1.content)["choices"][0]["message"]["content"] == raw
    _, events = sse(client, v1_body())
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == raw
    if raw.startswith('{"tr": "\\u'):
        assert json.loads(raw)["tr"] == "\ud800"  # what a client parsing the content then sees


def test_raw_by_source_two_mib(client: httpx.Client, ollama: FakeOllama) -> None:
    raw = '{"tr": "' + "x" * (2 * 1024 * 1024) + '"}'
    ollama.configure(raw_by_source={SOURCE: raw})
    resp = client.post("/api/chat", json=chat_body())
    assert len(resp.content) > 2 * 1024 * 1024
    assert resp.json()["message"]["content"] == raw
    _, lines = ndjson(client, "/api/chat", {**chat_body(), "stream": True})
    assert len(lines) < 1100
    assert "".join(line["message"]["content"] for line in lines) == raw


def test_raw_thinking_by_source(client: httpx.Client, ollama: FakeOllama) -> None:
    ollama.configure(raw_thinking_by_source={SOURCE: "<думаю>"}, style="thinking_field")
    msg = client.post("/api/chat", json=chat_body(model=THINKER)).json()["message"]
    assert msg == {"role": "assistant", "content": expected(), "thinking": "<думаю>"}
    ollama.configure(raw_by_source={SOURCE: "X"})
    msg = client.post("/api/chat", json=chat_body(model=THINKER)).json()["message"]
    assert msg == {"role": "assistant", "content": "X", "thinking": "<думаю>"}


def test_pad_response_bytes(client: httpx.Client, ollama: FakeOllama) -> None:
    plain = client.post("/api/chat", json=chat_body())
    ollama.configure(pad_response_bytes=100_000)
    padded = client.post("/api/chat", json=chat_body())
    body = padded.json()
    assert body["padding"] == "x" * 100_000
    assert body["message"] == plain.json()["message"]
    assert len(padded.content) >= len(plain.content) + 100_000
    _, lines = ndjson(client, "/api/chat", {**chat_body(), "stream": True})
    assert len(lines[-1]["padding"]) == 100_000
    assert all("padding" not in line for line in lines[:-1])
    assert len(client.post("/v1/chat/completions", json=v1_body()).json()["padding"]) == 100_000
    _, events = sse(client, v1_body())
    assert len(events[-2]["padding"]) == 100_000
    # errors and load replies are not padded
    assert "padding" not in client.post("/api/chat", json=chat_body(model="nope")).json()
    assert "padding" not in client.post("/api/chat", json={"model": MODEL, "messages": []}).json()


# ---------------------------------------------------------------- configure


@pytest.mark.parametrize(
    "knobs",
    [
        {"no_such_knob": 1},
        {"version": "latest"},
        {"raw_by_source": {"a": 1}},
        {"raw_by_source": ["a"]},
        {"pad_response_bytes": -1},
        {"pad_response_bytes": "10"},
        {"reject_format": "yes"},
        {"reject_response_format": 1},
    ],
)
def test_configure_rejects_bad_knobs(ollama: FakeOllama, knobs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each knob has its own message
        ollama.configure(**knobs)


def test_config_endpoint_accepts_new_knobs(client: httpx.Client) -> None:
    knobs = {
        "raw_by_source": {"a": "b"},
        "pad_response_bytes": 3,
        "reject_format": True,
        "reject_response_format": True,
    }
    resp = client.post("/_fake/config", json=knobs)
    assert resp.status_code == 200
    assert {k: resp.json()["config"][k] for k in knobs} == knobs
    assert client.post("/_fake/config", json={"pad_response_bytes": -5}).status_code == 400


# ---------------------------------------------------------------- durations and slots (issue 31)


def _concurrent_chats(url: str, n: int) -> list[dict[str, Any]]:
    """`n` chats sent at once, each on its own connection; their answers."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> dict[str, Any]:
        with httpx.Client(base_url=url, timeout=30.0, trust_env=False) as c:
            resp = c.post("/api/chat", json=chat_body(f"你好世界{i}"))
            assert resp.status_code == 200
            return dict(resp.json())

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _wait_ns(body: dict[str, Any]) -> int:
    """The wait inside Ollama, as routes.go defines it: total - load - prompt_eval - eval."""
    return int(body["total_duration"] - body["load_duration"] - body["prompt_eval_duration"] - body["eval_duration"])


def test_durations_hold_the_slot_wait_and_slots_change_on_the_same_port(ollama: FakeOllama) -> None:
    ollama.configure(parallel=1, latency_s=0.5)
    _, second, third = sorted(_concurrent_chats(ollama.url, 3), key=_wait_ns)
    # One slot: the last served arrived while the first was computing, so it waited inside the fake for the
    # whole compute of the second.
    assert _wait_ns(third) >= second["prompt_eval_duration"] + second["eval_duration"]
    assert ollama.stats()["max_running"] == 1

    ollama.reset()  # counters only: the same server, the same port
    ollama.configure(parallel=2, latency_s=0.2)
    answers = _concurrent_chats(ollama.url, 2)
    assert all(_wait_ns(b) >= 0 for b in answers)
    assert ollama.stats()["max_running"] == 2
    # Two slots: neither waited for the other's compute.
    for body in answers:
        assert _wait_ns(body) < min(b["prompt_eval_duration"] + b["eval_duration"] for b in answers)


def test_durations_knob_and_llama_server_timings(client: httpx.Client, ollama: FakeOllama) -> None:
    ollama.configure(durations=False)
    body = client.post("/api/chat", json=chat_body()).json()
    assert not (set(METRICS) - {"prompt_eval_count", "eval_count"}) & set(body)
    assert "timings" not in client.post("/v1/chat/completions", json=v1_body()).json()
    ollama.configure(v1_timings=True)
    timings = client.post("/v1/chat/completions", json=v1_body()).json()["timings"]
    assert set(timings) == {"prompt_n", "prompt_ms", "predicted_n", "predicted_ms"}
    assert timings["prompt_ms"] > 0
    assert timings["predicted_ms"] > 0
