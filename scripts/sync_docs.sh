#!/usr/bin/env bash
# Regenerates .env.example and the README's settings table from app/settings.py.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m app.settings --env-example > .env.example
.venv/bin/python - <<'PY'
import subprocess, sys
table = subprocess.run([sys.executable, "-m", "app.settings", "--markdown"], capture_output=True, text=True, check=True).stdout
start, end = "<!-- settings:start -->", "<!-- settings:end -->"
readme = open("README.md", encoding="utf-8").read()
readme = readme[: readme.index(start) + len(start)] + "\n" + table + readme[readme.index(end):]
open("README.md", "w", encoding="utf-8").write(readme)
PY
