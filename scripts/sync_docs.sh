#!/usr/bin/env bash
# Regenerates .env.example and the generated tables of the docs pages (settings, error codes, answer rules,
# models) from the code. tests/test_settings.py checks them (the same PAGES).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m app.settings --env-example > .env.example
.venv/bin/python - <<'PY'
import subprocess, sys
# (page, region, command that prints it)
GENERATED = (
    ("docs/settings.md", "settings", ["app.settings", "--markdown"]),
    ("docs/errors.md", "error-codes", ["app.errors"]),
    ("docs/errors.md", "rules", ["app.dubbing"]),
    ("docs/backends.md", "models", ["app.editor_protocol", "--models"]),
)
for page, name, command in GENERATED:
    text = open(page, encoding="utf-8").read()
    table = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, check=True).stdout
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = text[: text.index(start) + len(start)] + "\n" + table.rstrip("\n") + "\n" + text[text.index(end):]
    open(page, "w", encoding="utf-8").write(text)
PY
