#!/usr/bin/env bash
# Builds the AFL target and fuzzes it for SECONDS (default 300); prints
# AFL's own summary (executions, paths, crashes). Needs `cargo install cargo-afl`.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-300}"
cargo afl build --release --bin parsers
rm -rf out
AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
    cargo afl fuzz -i seeds -o out -V "$seconds" target/release/parsers >/dev/null 2>&1 || true
grep -E "execs_done|execs_per_sec|corpus_count|saved_crashes|saved_hangs|run_time" out/default/fuzzer_stats
test "$(grep saved_crashes out/default/fuzzer_stats | awk '{print $3}')" = 0
