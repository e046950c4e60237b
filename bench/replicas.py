#!/usr/bin/env python3
"""The stores of many replicas against one process, same run. Three
configurations of the same binary:

  - SQLite alone (the default: in-process limiter, SQLite file),
  - SQLite + Redis (the Redis limiter and revocation feed),
  - PostgreSQL + Redis (the production setup for replicas anywhere),

each measured on: logout under a limit that lets everything through (every
request still counted by the limiter), the session check (also under
RATE_LIMIT_AUTH) and /auth/verify (its own limiter, none by default), with
the three servers side by side in interleaved rounds (median round); then,
one configuration at a time, refresh at 32 connections (bench/
refresh_load, each connection rotating its own session: a database write
per request; best of the runs) and logout refused by a limit (429s).
Ratios are against SQLite alone.

    cargo build --release --examples && python3 bench/replicas.py [--quick]

Needs REDIS_URL (default redis://127.0.0.1:6379) and POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432/test; a schema of its own, dropped at the
end, through psql). Redis and PostgreSQL are not pinned: they share the
machine's two cores with the server (CPU 0) and the load (CPU 1), as
sidecars would. Writes a new run file, bench/results/runs/<date>-replicas-<time>.{md,json}
(bench/record.py; bench/results/LATEST points at it).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import record  # noqa: E402
import run  # noqa: E402
import scale  # noqa: E402


def server(data_dir, limit, extra):
    port = run.free_port()
    if "REDIS_URL" in extra:
        # A budget of this server's own (no keys of an earlier limit).
        extra = dict(extra, REDIS_KEY_PREFIX=f"chronos-bench:{uuid.uuid4().hex}:")
    srv = run.Server("chronos", [run.CHRONOS],
                     run.chronos_env(data_dir, port, RUST_LOG="info,chronos::access=off",
                                     RATE_LIMIT_AUTH=limit, **extra), port)
    return srv, port


def request_path(configs, args):
    """Logout (counted), session and verify: the three servers run side by
    side and are measured in interleaved rounds of short runs, the order
    rotating each round, so that the machine's drift (this VM moves by
    +-30% between minutes) hits each alike. Reported per configuration: the
    median round, and the median of the per-round ratios to SQLite alone
    (each ratio between runs seconds apart) with their spread."""
    print("\nrequest path, interleaved:", flush=True)
    dirs, servers = [], {}
    short = argparse.Namespace(**dict(vars(args), duration=args.round_duration))
    try:
        for key, _, extra in configs:
            d = tempfile.TemporaryDirectory()
            dirs.append(d)
            run.add_user(d.name, **extra)
            srv, port = server(d.name, run.UNLIMITED, extra)
            servers[key] = (srv, port, "Cookie: " + run.sign_in(port))
        targets = (("POST /auth/logout, counted", "/auth/logout", "POST", False),
                   ("GET /auth/session", "/auth/session", "GET", True),
                   ("GET /auth/verify", "/auth/verify", "GET", True))
        rounds = {key: {label: [] for label, *_ in targets} for key in servers}
        keys = list(servers)
        for r in range(args.rounds):
            order = keys[r % len(keys):] + keys[:r % len(keys)]
            for label, path, method, signed in targets:
                for key in order:
                    _, port, cookie = servers[key]
                    res = run.wrk(f"http://127.0.0.1:{port}{path}", short, method,
                                  [cookie] if signed else [])
                    assert res["non2xx"] == 0, (key, label, res)
                    rounds[key][label].append(res)
            print(f"  round {r + 1}/{args.rounds} done", flush=True)
    finally:
        for srv, *_ in servers.values():
            srv.stop()
        for d in dirs:
            d.cleanup()
    out = {}
    base = keys[0]
    for key, per_label in rounds.items():
        out[key] = {}
        for label, runs in per_label.items():
            ratios = sorted(x["rps"] / b["rps"] for x, b in zip(runs, rounds[base][label]))
            ordered = sorted(runs, key=lambda x: x["rps"])
            median = ordered[len(ordered) // 2]
            out[key][label] = dict(median, runs=[x["rps"] for x in runs],
                                   paired_ratio=statistics.median(ratios),
                                   ratio_quartiles=[ratios[len(ratios) // 4],
                                                    ratios[(3 * len(ratios)) // 4]])
            print(f"  {key:<16} {label:<32} {median['rps']:>10,.0f} req/s  "
                  f"p99 {median['p99_ms']:.3f} ms  paired ratio "
                  f"{out[key][label]['paired_ratio']:.2f}", flush=True)
    return out


def database_path(name, extra, args):
    """Refresh at 32 connections (a database write each) and logout refused
    by a limit (429s), one configuration at a time."""
    print(f"\n{name}:", flush=True)
    out = {}
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as work:
        run.add_user(data_dir, **extra)
        srv, port = server(data_dir, run.UNLIMITED, extra)
        try:
            best = None
            for _ in range(args.runs):
                r = scale.refresh(port, args.connections, args.duration, work)
                assert r["errors"] == 0, r
                if best is None or r["rps"] > best["rps"]:
                    best = r
            print(f"  POST /auth/refresh: {best['rps']:,.0f} req/s, "
                  f"p99 {best['p99_ms']:.2f} ms", flush=True)
            out["POST /auth/refresh (rotating)"] = best
        finally:
            srv.stop()
        srv, port = server(data_dir, "5/minute", extra)
        try:
            for _ in range(5):
                run.raw_response(port, b"POST /auth/logout HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            out["POST /auth/logout, refused (429)"] = run.measure(
                "POST /auth/logout, refused (429)", f"http://127.0.0.1:{port}/auth/logout", args,
                method="POST", expect_non2xx=True)
        finally:
            srv.stop()
    return out


def psql(base, sql):
    subprocess.run(["psql", base, "-qAtc", sql], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--round-duration", type=int, default=4,
                    help="seconds per run in the interleaved request-path rounds")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.runs, args.rounds, args.round_duration = 3, 1, 1, 2
    redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    base = os.environ.get("POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    schema = f"chronos_bench_{uuid.uuid4().hex}"
    shared = {"REDIS_URL": redis}
    postgres = dict(shared, DATABASE_URL=f"{base}?options=-csearch_path%3D{schema}")
    results = {"machine": run.machine(), "config": vars(args)}
    configs = (("sqlite", "SQLite alone", {}), ("sqlite+redis", "SQLite + Redis", shared),
               ("postgres+redis", "PostgreSQL + Redis", postgres))
    psql(base, f"CREATE SCHEMA {schema}")
    try:
        fast = request_path(configs, args)
        psql(base, f"DROP SCHEMA {schema} CASCADE")
        psql(base, f"CREATE SCHEMA {schema}")
        for key, name, extra in configs:
            results[key] = dict(fast[key], **database_path(name, extra, args))
    finally:
        psql(base, f"DROP SCHEMA {schema} CASCADE")
    lines = ["| measured | SQLite alone | SQLite + Redis | ratio | PostgreSQL + Redis | ratio "
             "| p99 SQLite | p99 SQLite + Redis | p99 PostgreSQL + Redis |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    def ratio(x, m):
        if "paired_ratio" not in x:
            return f"{x['rps'] / m['rps']:.2f}×"
        low, high = x["ratio_quartiles"]
        return f"{x['paired_ratio']:.2f}× ({low:.2f}–{high:.2f})"

    for label in results["sqlite"]:
        m, r, p = (results[k][label] for k in ("sqlite", "sqlite+redis", "postgres+redis"))
        lines.append(f"| {label} | {m['rps']:,.0f} | {r['rps']:,.0f} | {ratio(r, m)} "
                     f"| {p['rps']:,.0f} | {ratio(p, m)} "
                     f"| {m['p99_ms']:.3f} ms | {r['p99_ms']:.3f} ms | {p['p99_ms']:.3f} ms |")
    table = "\n".join(lines)
    print("\n" + table)
    record.write("replicas", "bench/replicas.py", (
                f"machine: {results['machine']}\n\nconfig: {results['config']}\n\n{table}\n\n"
                "Request-path ratios (first three rows): the median over the rounds of each "
                "round's ratio to SQLite alone, measured seconds apart, with the middle half of "
                "the rounds' ratios in brackets; the throughput columns are each "
                "configuration's median round. Refresh and 429 rows: one configuration at a "
                "time, refresh the best of the runs, 429s the median of three.\n"), data=results)


if __name__ == "__main__":
    main()
