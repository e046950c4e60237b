#!/usr/bin/env python3
"""The Redis limiter against the in-process one, same run: logout under a
limit that lets everything through (every request still counted), logout
refused by a limit (429s), and the session check (also under
RATE_LIMIT_AUTH) and /auth/verify (its own limiter, none by default).

    cargo build --release && python3 bench/replicas.py [--quick]

Needs REDIS_URL (default redis://127.0.0.1:6379); uses a key prefix of its
own. Redis itself is not pinned: it shares the machine's two cores with the
server (CPU 0) and wrk (CPU 1), as a sidecar would. Writes
bench/results/replicas.{md,json}.
"""
import argparse
import json
import os
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


def measure_config(name, extra, args):
    print(f"\n{name}:", flush=True)
    out = {}
    with tempfile.TemporaryDirectory() as data_dir:
        run.add_user(data_dir)
        for limit, label, refused in ((run.UNLIMITED, "POST /auth/logout, counted", False),
                                      ("5/minute", "POST /auth/logout, refused (429)", True)):
            port = run.free_port()
            srv = run.Server("chronos", [run.CHRONOS],
                             run.chronos_env(data_dir, port, RUST_LOG="info,chronos::access=off",
                                             RATE_LIMIT_AUTH=limit, **extra), port)
            try:
                if refused:
                    for _ in range(5):
                        run.raw_response(port, b"POST /auth/logout HTTP/1.1\r\nHost: x\r\n"
                                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                out[label] = run.measure(label, f"http://127.0.0.1:{port}/auth/logout", args,
                                         method="POST", expect_non2xx=refused)
                if not refused:
                    cookie = "Cookie: " + run.sign_in(port)
                    for path in ("/auth/session", "/auth/verify"):
                        out[f"GET {path}"] = run.measure(f"GET {path}",
                                                         f"http://127.0.0.1:{port}{path}", args,
                                                         headers=[cookie])
            finally:
                srv.stop()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    if args.quick:
        args.duration, args.runs = 3, 1
    redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    prefix = f"chronos-bench:{uuid.uuid4().hex}:"
    results = {"machine": run.machine(), "config": vars(args)}
    results["memory"] = measure_config("in-process limiter", {}, args)
    results["redis"] = measure_config("Redis limiter", {"REDIS_URL": redis,
                                                        "REDIS_KEY_PREFIX": prefix}, args)
    lines = ["| measured | in-process req/s | Redis req/s | ratio | p99 in-process | p99 Redis |",
             "|---|---:|---:|---:|---:|---:|"]
    for label in results["memory"]:
        m, r = results["memory"][label], results["redis"][label]
        lines.append(f"| {label} | {m['rps']:,.0f} | {r['rps']:,.0f} | {r['rps'] / m['rps']:.2f}× "
                     f"| {m['p99_ms']:.3f} ms | {r['p99_ms']:.3f} ms |")
    table = "\n".join(lines)
    print("\n" + table)
    os.makedirs(os.path.join(run.ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(run.ROOT, "bench", "results", "replicas.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(run.ROOT, "bench", "results", "replicas.md"), "w") as f:
        f.write(f"machine: {results['machine']}\n\nconfig: {results['config']}\n\n{table}\n")


if __name__ == "__main__":
    main()
