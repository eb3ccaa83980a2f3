#!/usr/bin/env bash
# Create .venv and install tunebench with its test extras (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# TensorFlow: the `cpu` extra, or TUNEBENCH_EXTRAS=gpu on a CUDA machine (one TensorFlow either way)
.venv/bin/python -m pip install -q -e ".[${TUNEBENCH_EXTRAS:-cpu},test]"
