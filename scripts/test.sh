#!/usr/bin/env bash
# Set up (if needed) and run the tests; arguments go to pytest. Two pytest-xdist workers (`-n 2`; `-n 0` runs
# them in this process): the tests that share a setup (the dvc repro of the fixture `project`, a module's servers)
# run in one worker (tests/conftest.py). Markers (pyproject.toml):
# slow (minutes-long runs), servers (PostgreSQL or an MLflow server), browser (Chromium), dvc (runs `dvc`).
#   bash scripts/test.sh                          # everything: what CI's .ci/run runs
#   bash scripts/test.sh -m "not slow"            # the fast tier: 5 minutes or less on 2 cores
#   bash scripts/test.sh -m slow --durations=30   # the slow tier, its slowest tests listed
#   bash scripts/test.sh -m "not servers and not browser"   # without PostgreSQL, `mlflow server` or Chromium
#   bash scripts/test.sh tests/search -k outage   # one folder, tests by name
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONUNBUFFERED=1
.venv/bin/python -m pytest -q -n 2 --dist loadgroup "$@"
