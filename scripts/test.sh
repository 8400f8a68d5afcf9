#!/usr/bin/env bash
# Set up, then run the whole test suite, the real-browser test included (arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
exec .venv/bin/python -m pytest "$@"
