#!/usr/bin/env bash
# Regenerates .env.example and the README's generated tables (settings, error codes) from the code.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m app.settings --env-example > .env.example
.venv/bin/python - <<'PY'
import subprocess, sys
readme = open("README.md", encoding="utf-8").read()
GENERATED = (
    ("settings", ["app.settings", "--markdown"]),
    ("error-codes", ["app.errors"]),
    ("rules", ["app.dubbing"]),
    ("models", ["app.editor_protocol", "--models"]),
)
for name, command in GENERATED:
    table = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, check=True).stdout
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    readme = readme[: readme.index(start) + len(start)] + "\n" + table.rstrip("\n") + "\n" + readme[readme.index(end):]
open("README.md", "w", encoding="utf-8").write(readme)
PY
