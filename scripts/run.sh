#!/usr/bin/env bash
# Set up (if needed) and run the main job: `dvc repro` on params.yaml (the embedded offline default).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=3 PATH="$PWD/.venv/bin:$PATH"
[ -d .dvc ] || dvc init -q $( [ -d .git ] || echo --no-scm )
dvc repro "$@"
# DVC 3 always ends a repro that ran stages with "Use `dvc push` ..." (dvc/commands/repro.py; no setting
# silences it short of `-q`, which hides the stages' output too): the summary comes after it.
echo
python -m pipeline summary  # per benchmark: test metric, baseline, whether the champion moved
