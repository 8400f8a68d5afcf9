#!/usr/bin/env bash
# Set up, then run the demo on http://127.0.0.1:7860 (arguments go to app.py, e.g. --share or --weights).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python app.py "$@"
