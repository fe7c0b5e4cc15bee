#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest Testing/Python -q "$@"
