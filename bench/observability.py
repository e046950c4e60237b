#!/usr/bin/env python3
"""What observability costs, same run (issue 13): POST /auth/logout against
the ceiling (a bare hyper server sending the same bytes) with the access
log on and off, and with Prometheus metrics on (METRICS_BIND, a scrape
every second meanwhile) and off. Server on CPU 0, wrk on CPU 1; the
configurations are measured in rounds (A B C D, A B C D, ...) so drift in
the machine hits each alike; the median per configuration is reported.

    cargo build --release --bin chronos --example ceiling
    python3 bench/observability.py [--rounds 3] [--duration 10]

Results: a new run file, bench/results/runs/<date>-observability-<time>.{md,json}
(bench/record.py; bench/results/LATEST points at it).
"""
import argparse
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import record  # noqa: E402
import run  # noqa: E402


def scraper(port, stop):
    while not stop.wait(1.0):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/metrics")
            conn.getresponse().read()
            conn.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    args.runs = 1
    work = tempfile.mkdtemp()
    configs = {
        "ceiling": None,
        "chronos, log on, metrics off (default)": {},
        "chronos, log on, metrics on": {"METRICS_BIND": "metrics"},
        "chronos, log off, metrics off": {"RUST_LOG": "info,chronos::access=off"},
    }
    results = {name: [] for name in configs}
    try:
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}:", flush=True)
            for name, extra in configs.items():
                port = run.free_port()
                if extra is None:
                    srv = run.Server("ceiling", [run.CEILING, f"127.0.0.1:{port}"], dict(os.environ),
                                     port, ready_path="/auth/logout", ready_method="POST")
                else:
                    env = dict(extra)
                    metrics_port = None
                    if "METRICS_BIND" in env:
                        metrics_port = run.free_port()
                        env["METRICS_BIND"] = f"127.0.0.1:{metrics_port}"
                    data_dir = os.path.join(work, f"{rnd}-{len(results[name])}-{port}")
                    srv = run.Server("chronos", [run.CHRONOS], run.chronos_env(data_dir, port, **env), port)
                stop = threading.Event()
                if extra and "METRICS_BIND" in extra:
                    threading.Thread(target=scraper, args=(metrics_port, stop), daemon=True).start()
                try:
                    row = run.measure(f"{name}", f"http://127.0.0.1:{port}/auth/logout", args, "POST")
                finally:
                    stop.set()
                    srv.stop()
                results[name].append(row["rps"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = {name: statistics.median(v) for name, v in results.items()}
    ceiling = median["ceiling"]
    default = median["chronos, log on, metrics off (default)"]
    lines = ["# Observability cost: POST /auth/logout, same run\n",
             f"{args.rounds} rounds × {args.duration} s per configuration, 32 connections, "
             "server on CPU 0, wrk on CPU 1; median per configuration.\n",
             "| configuration | req/s (median) | runs | × ceiling | × default |", "|---|---:|---|---:|---:|"]
    for name, value in median.items():
        runs = ", ".join(f"{r:,.0f}" for r in results[name])
        lines.append(f"| {name} | {value:,.0f} | {runs} | {value / ceiling:.2f} | {value / default:.3f} |")
    print("\n".join(lines))
    record.write("observability", "bench/observability.py", "\n".join(lines) + "\n",
                 data={"config": vars(args), "runs": results, "median": median})


if __name__ == "__main__":
    main()
