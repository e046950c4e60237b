#!/usr/bin/env python3
"""Sessions at scale on one node: an empty database against a generated one
(1M accounts, 1M live sessions, 100k revocations by default), same run.

    bench/scale.sh            # full: generates the data (~1 min), ~20 min
    bench/scale.sh --quick    # smoke: 100k accounts, short runs

For each database: start-up to the first answer, idle memory, database
size and bytes per session (SQLite's dbstat), then two rounds of mixed
load — session checks, /auth/verify with one token and cycling through
100k distinct ones, refresh with bench/refresh_load (it follows the
rotating cookies; wrk cannot) at 32 and at 2 connections on freshly
signed-in sessions — and the memory after each round. Results are printed
and written to a new run file, bench/results/runs/<date>-scale-<time>.{md,json}
(bench/record.py; bench/results/LATEST points at it).
"""
import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import record  # noqa: E402
import run  # noqa: E402

GENERATE = os.path.join(run.RELEASE, "examples", "generate")
REFRESH_LOAD = os.path.join(run.RELEASE, "examples", "refresh_load")
TOKENS_LUA = os.path.join(run.ROOT, "bench", "tokens.lua")



def db_bytes(data_dir):
    return sum(os.path.getsize(os.path.join(data_dir, f)) for f in os.listdir(data_dir)
               if f.startswith("chronos.db"))


def db_stats(data_dir):
    """Pages the sessions table and its indexes use, per row; total pages."""
    conn = sqlite3.connect(f"file:{os.path.join(data_dir, 'chronos.db')}?mode=ro", uri=True)
    try:
        sessions = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_schema WHERE tbl_name = 'sessions'")]
        names += ["sqlite_autoindex_sessions_1"]
        marks = ",".join("?" * len(names))
        used = conn.execute(f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({marks})",
                            names).fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        return {"sessions": sessions, "session_bytes": used / max(sessions, 1),
                "used_bytes": pages * page_size}
    finally:
        conn.close()


def start(data_dir, port, **env):
    started = time.monotonic()
    srv = run.Server("chronos", [run.CHRONOS],
                     run.chronos_env(data_dir, port, RUST_LOG="info,chronos::access=off", **env),
                     port)
    return srv, (time.monotonic() - started) * 1000



def refresh(port, connections, seconds, work):
    path = run.sessions_file(port, connections, os.path.join(work, f"sessions-{connections}.txt"))
    out = subprocess.run(run.pinned(1, [REFRESH_LOAD, f"http://127.0.0.1:{port}", path,
                                        str(connections), str(seconds)]),
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def first_pass(url, argv, tokens_file, distinct):
    """Every token once (each a cache miss the first time): runs of 2 s,
    each carrying on where the last stopped. Returns requests per second."""
    done, started = 0, time.monotonic()
    while done < distinct:
        out = subprocess.run(run.pinned(1, argv + ["-d2s", url, "--", tokens_file, str(done)]),
                             capture_output=True, text=True, check=True).stdout
        done += int(run.WRK_RE["requests"].search(out).group(1))
    return done / (time.monotonic() - started)


def verify_tokens(port, args, tokens_file, label):
    """/auth/verify through tokens.lua after a first pass over every token,
    median of the runs."""
    url = f"http://127.0.0.1:{port}/auth/verify"
    argv = ["wrk", "-t1", f"-c{args.connections}", "--latency", "-s", TOKENS_LUA]
    with open(tokens_file) as f:
        distinct = sum(1 for line in f if line.strip())
    cold = first_pass(url, argv, tokens_file, distinct)
    runs = []
    for _ in range(args.runs):
        out = subprocess.run(run.pinned(1, argv + [f"-d{args.duration}s", url, "--", tokens_file]),
                             capture_output=True, text=True, check=True).stdout
        runs.append({"rps": float(run.WRK_RE["rps"].search(out).group(1)),
                     "p99_ms": run.parse_latency(out, 99),
                     "non2xx": int(m.group(1)) if (m := run.WRK_RE["non2xx"].search(out)) else 0})
    runs.sort(key=lambda r: r["rps"])
    median = runs[len(runs) // 2]
    if any(r["non2xx"] for r in runs):
        raise RuntimeError(f"{label}: non-2xx answers {runs}")
    print(f"  {label:<48} {median['rps']:>10,.0f} req/s  p99 {median['p99_ms']:.3f} ms  "
          f"(first pass {cold:,.0f} req/s)", flush=True)
    return dict(median, label=label, distinct=distinct, first_pass_rps=cold)


def measure_round(srv, port, args, work, tokens_file, rnd):
    out = {}
    cookie = f"Cookie: {run.sign_in(port)}"
    base = f"http://127.0.0.1:{port}"
    out["session"] = run.measure(f"round {rnd}: GET /auth/session", base + "/auth/session",
                                 args, "GET", (cookie,))
    one = os.path.join(work, "one-token.txt")
    with open(one, "w") as f:
        f.write(cookie.split("=", 1)[1] + "\n")
    out["verify_one"] = verify_tokens(port, args, one, f"round {rnd}: GET /auth/verify, one token")
    if tokens_file:
        before = run.rss_mib(srv.proc.pid)
        out["verify_cycling"] = verify_tokens(
            port, args, tokens_file, f"round {rnd}: GET /auth/verify, many tokens")
        out["verify_cycling"]["vs_one"] = out["verify_cycling"]["rps"] / out["verify_one"]["rps"]
        out["cache_growth_mib"] = run.rss_mib(srv.proc.pid) - before
    for connections, seconds in [(args.connections, args.refresh_seconds), (2, args.refresh_seconds // 3)]:
        r = refresh(port, connections, seconds, work)
        r["vs_session"] = r["rps"] / out["session"]["rps"]
        out[f"refresh_{connections}"] = r
        print(f"  round {rnd}: POST /auth/refresh at {connections:<2} connections    "
              f"{r['rps']:>10,.0f} req/s  p99 {r['p99_ms']:.3f} ms  max {r['max_ms']:.1f} ms  "
              f"errors {r['errors']}  ({r['vs_session']:.3f}× session)", flush=True)
        if r["errors"]:
            raise RuntimeError(f"refresh at {connections}: {r['errors']} non-200 answers")
    out["rss_after_mib"] = run.rss_mib(srv.proc.pid)
    print(f"  round {rnd}: memory after the round {out['rss_after_mib']:.1f} MiB", flush=True)
    return out


def dataset(name, args, work, generated):
    print(f"\n{name}:", flush=True)
    data_dir = os.path.join(work, name)
    os.makedirs(data_dir)
    port = run.free_port()
    result = {"name": name}
    tokens_file = None
    if generated:
        started = time.monotonic()
        out = subprocess.run([GENERATE, data_dir, *map(str, generated)], check=True,
                             capture_output=True, text=True,
                             env=dict(os.environ, PUBLIC_URL=f"http://127.0.0.1:{port}")).stdout
        result["generate_s"] = time.monotonic() - started
        print("  " + out.strip())
        tokens_file = os.path.join(data_dir, "tokens.txt")
    run.add_user(data_dir)
    # Start-up: the first start migrates nothing (the generator did), so
    # every start is a restart; the median of three.
    times = []
    for _ in range(3):
        srv, ms = start(data_dir, port)
        times.append(ms)
        srv.stop()
    result["startup_ms"] = statistics.median(times)
    srv, _ = start(data_dir, port)
    time.sleep(2)
    result["idle_rss_mib"] = run.rss_mib(srv.proc.pid)
    result["db_mib"] = db_bytes(data_dir) / (1 << 20)
    result.update(db_stats(data_dir))
    print(f"  start-up {result['startup_ms']:.0f} ms, idle memory {result['idle_rss_mib']:.1f} MiB, "
          f"database {result['db_mib']:.1f} MiB, {result['session_bytes']:.0f} bytes per session "
          f"({result['sessions']:,} sessions)", flush=True)
    try:
        rounds = []
        for rnd in (1, 2):
            before = db_stats(data_dir)["used_bytes"]
            rounds.append(measure_round(srv, port, args, work, tokens_file, rnd))
            refreshes = sum(rounds[-1][k]["requests"] for k in rounds[-1] if k.startswith("refresh_"))
            signins = args.connections + 2 + 1
            grown = db_stats(data_dir)["used_bytes"] - before
            rounds[-1]["db_growth_bytes"] = grown
            rounds[-1]["refreshes"] = refreshes
            print(f"  round {rnd}: database grew {grown:,} bytes over {refreshes:,} refreshes "
                  f"and {signins} sign-ins", flush=True)
        result["rounds"] = rounds
    finally:
        srv.stop()
    return result


def write_results(results):
    lines = [f"machine: {results['machine']}", "", f"config: {results['config']}", "",
             "| database | start-up ms | idle RSS MiB | size MiB | bytes/session |",
             "|---|---:|---:|---:|---:|"]
    for d in results["datasets"]:
        lines.append(f"| {d['name']} | {d['startup_ms']:.0f} | {d['idle_rss_mib']:.1f} | "
                     f"{d['db_mib']:.1f} | {d['session_bytes']:.0f} |")
    lines += ["", "| database, round | measured | req/s | p99 ms | max ms | ratio |",
              "|---|---|---:|---:|---:|---|"]
    for d in results["datasets"]:
        for n, r in enumerate(d["rounds"], 1):
            tag = f"{d['name']}, {n}"
            lines.append(f"| {tag} | GET /auth/session | {r['session']['rps']:,.0f} | "
                         f"{r['session']['p99_ms']:.3f} | | |")
            lines.append(f"| {tag} | GET /auth/verify, one token | {r['verify_one']['rps']:,.0f} | "
                         f"{r['verify_one']['p99_ms']:.3f} | | |")
            if "verify_cycling" in r:
                v = r["verify_cycling"]
                lines.append(f"| {tag} | GET /auth/verify, {v['distinct']:,} tokens | {v['rps']:,.0f} | "
                             f"{v['p99_ms']:.3f} | | {v['vs_one']:.2f}× one token |")
                lines.append(f"| {tag} | GET /auth/verify, first sight of each | "
                             f"{v['first_pass_rps']:,.0f} | | | |")
            for k in [k for k in r if k.startswith("refresh_")]:
                f = r[k]
                lines.append(f"| {tag} | POST /auth/refresh, {k.split('_')[1]} connections | "
                             f"{f['rps']:,.0f} | {f['p99_ms']:.3f} | {f['max_ms']:.1f} | "
                             f"{f['vs_session']:.3f}× session |")
            lines.append(f"| {tag} | memory after the round | {r['rss_after_mib']:.1f} MiB | | | |")
            lines.append(f"| {tag} | database growth | {r['db_growth_bytes']:,} bytes over "
                         f"{r['refreshes']:,} refreshes | | | |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    record.write("scale", "bench/scale.py (run by bench/scale.sh)", text, data=results)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true",
                    help="100k accounts and sessions, 10k revocations, 3 s runs")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--runs", type=int, default=3, help="wrk runs per figure (the median)")
    ap.add_argument("--refresh-seconds", type=int, default=30,
                    help="seconds of the refresh run at --connections (a third of it at 2)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--sessions", type=int, default=1_000_000)
    ap.add_argument("--revocations", type=int, default=100_000)
    ap.add_argument("--tokens", type=int, default=100_000)
    args = ap.parse_args()
    if args.quick:
        args.duration, args.runs, args.refresh_seconds = 3, 1, 6
        args.accounts = args.sessions = 100_000
        args.revocations = 10_000
    results = {"machine": run.machine(), "config": vars(args), "datasets": []}
    print(f"machine: {results['machine']}")
    print("servers on CPU 0, load clients on CPU 1; access log off")
    work = tempfile.mkdtemp(prefix="chronos-scale-")
    try:
        results["datasets"].append(dataset("empty", args, work, None))
        size = (args.accounts, args.sessions, args.revocations, args.tokens)
        results["datasets"].append(dataset(
            f"{args.accounts // 1000}k accounts", args, work, size))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results(results)


if __name__ == "__main__":
    main()
