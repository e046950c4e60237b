#!/usr/bin/env bash
# The load benchmark in one command: builds the release server and the
# reference servers, installs wrk and the Python reference app if missing,
# then runs bench/run.py (pass --quick for a few-second smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
if ! command -v wrk >/dev/null; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi
if ! [ -x bench/.venv/bin/uvicorn ]; then
    python3 -m venv bench/.venv
    bench/.venv/bin/pip install -q -r bench/python/requirements.txt
fi
# The identity providers the provider rows run against (as in the tests).
npm ci --prefix tests/browser --no-audit --no-fund --silent
cargo build --release --bin chronos --example ceiling --example verify_baseline --example limiter_memory
exec python3 bench/run.py "$@"
