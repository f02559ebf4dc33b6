#!/usr/bin/env bash
# One command from a clean clone to a passing test run: install (scripts/setup.sh), then the default suite
# (about 10 minutes at most on 2 cores) and the slow suite (real training runs, SmolLM2, wheel, Ray).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python -m pytest
python -m pytest -m slow
