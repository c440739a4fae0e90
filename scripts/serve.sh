#!/usr/bin/env bash
# Kept for old instructions. The set-up-and-start command is scripts/serve.py (Linux, macOS and Windows).
set -euo pipefail
exec "${PYTHON:-python3}" "$(dirname "$0")/serve.py" "$@"
