#!/usr/bin/env bash
# Create .venv (if needed) and install DiffusionPEFTLib with its dependencies.
# torch is named in the same pip command so pip takes the local CPU wheel instead of a CUDA build.
# Usage: scripts/setup.sh [test]   ("test" adds pytest, slicer-core, PySide6, peft)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
extras=""
[ "${1:-}" = "test" ] && extras="[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0" -e ".${extras}" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
.venv/bin/python -c "import DiffusionPEFTLib, torch, monai; print('DiffusionPEFTLib ready: torch', torch.__version__, 'monai', monai.__version__)"
