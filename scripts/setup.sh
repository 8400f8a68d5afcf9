#!/usr/bin/env bash
# Set up (or update) the project's virtual environment in .venv.
#   bash scripts/setup.sh         runtime packages: the demo, training, evaluation, the Hub
#   bash scripts/setup.sh --dev   also the test tools and the Chromium the browser test drives
set -euo pipefail
cd "$(dirname "$0")/.."

requirements=requirements.txt
[[ "${1:-}" == "--dev" ]] && requirements=requirements-dev.txt

if [[ ! -x .venv/bin/python ]]; then
  "${PYTHON:-python3}" -m venv .venv
fi
# pip prints a line for each package it already has; keep the output to what changed or failed.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"

if [[ "$requirements" == requirements-dev.txt ]] && ! command -v chromium >/dev/null; then
  # Playwright drives Debian's Chromium; `playwright install` would download a browser, which fails offline.
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
