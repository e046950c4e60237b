#!/usr/bin/env bash
# Sessions at scale in one command: builds the release server, the data
# generator and the refresh load client, installs wrk if missing, then runs
# bench/scale.py (pass --quick for a smaller, shorter run).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
if ! command -v wrk >/dev/null; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --bin chronos --example generate --example refresh_load
exec python3 bench/scale.py "$@"
