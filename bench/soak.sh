#!/usr/bin/env bash
# The soak run (issue 13): builds the release server, then ten minutes of
# mixed traffic (bench/soak.py; --minutes N for another length).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin chronos
exec python3 bench/soak.py "$@"
