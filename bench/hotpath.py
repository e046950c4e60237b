#!/usr/bin/env python3
"""The hot path in figures a busy machine cannot fake (issue 23): for
logout, session, verify and refresh, in interleaved rounds, throughput,
p99 and max latency *and* CPU per request (utime+stime of the server,
/proc) *and* context switches per request (voluntary and involuntary,
every thread of the server, /proc/PID/task/*/status), for this build, the
bare hyper ceiling (logout only: it serves nothing else) and, given
`--baseline`, an earlier build (e.g. the previous commit's); refresh at 32
and at 2 connections, on SQLite and (unless `--no-postgres`) PostgreSQL;
then, with `--callgrind`, instructions per request for every build and
the ceiling: the whole process (every thread, hyper and the routes
included, the kernel not) under the same 32 connections, as the
difference of a 3 s and a 9 s run (start-up and sign-in cancel out).

    cargo build --release --examples && cargo build --release
    python3 bench/hotpath.py [--baseline /path/to/earlier/chronos] [--callgrind]
        [--connections 32] [--duration 5] [--rounds 3] [--no-postgres]

Every server is pinned to CPU 0 and the load generator to CPU 1 (PostgreSQL
is not pinned). Logout is sent without cookies (as bench/run.py does),
session and verify with one signed-in session's cookie, refresh by
bench/refresh_load.rs (which follows the rotating cookies), a fresh set of
signed-in sessions per measurement. Chronos runs with its defaults (access
log on, to a file); on PostgreSQL each build has a schema of its own in
POSTGRES_URL's database (default postgres://postgres@127.0.0.1:5432/test).
Writes bench/results/runs/<date>-hotpath-<time>.md (and .json).
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import record  # noqa: E402
import run  # noqa: E402

REFRESH_LOAD = os.path.join(run.RELEASE, "examples", "refresh_load")
# (name, endpoint, connections, engine): what each round measures.
MEASURES = [("logout", "logout", None, "sqlite"), ("session", "session", None, "sqlite"),
            ("verify", "verify", None, "sqlite"), ("refresh", "refresh", None, "sqlite"),
            ("refresh, 2 connections", "refresh", 2, "sqlite"),
            ("refresh on PostgreSQL", "refresh", None, "postgres"),
            ("refresh on PostgreSQL, 2 connections", "refresh", 2, "postgres")]


def load(endpoint, port, args, cookie, work, connections):
    """Runs the load; (requests, req/s, p99 ms, max ms)."""
    if endpoint == "refresh":
        path = run.sessions_file(port, connections, os.path.join(work, f"sessions-{port}.txt"))
        out = subprocess.run(run.pinned(1, [REFRESH_LOAD, f"http://127.0.0.1:{port}", path,
                                            str(connections), str(args.duration)]),
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out)
        if r["errors"]:
            raise RuntimeError(f"refresh: {r['errors']} answers not 200")
        return r["requests"], r["rps"], r["p99_ms"], r["max_ms"]
    path, method, headers = {
        "logout": ("/auth/logout", "POST", ()),
        "session": ("/auth/session", "GET", (f"Cookie: {cookie}",)),
        "verify": ("/auth/verify", "GET", (f"Cookie: {cookie}",)),
    }[endpoint]
    wrk_args = argparse.Namespace(**{**vars(args), "connections": connections})
    r = run.wrk(f"http://127.0.0.1:{port}{path}", wrk_args, method, headers)
    if r["non2xx"]:
        raise RuntimeError(f"{endpoint}: {r['non2xx']} answers not 2xx")
    return r["requests"], r["rps"], r["p99_ms"], None


def measure(name, endpoint, label, server, args, cookie, work, connections):
    # A 1 s warm-up (not for refresh: its sign-ins warm it).
    if endpoint != "refresh":
        warm = argparse.Namespace(**{**vars(args), "duration": 1})
        load(endpoint, server.port, warm, cookie, work, connections)
    pid = server.proc.pid
    cpu0, (v0, i0) = run.cpu_seconds(pid), run.switches(pid)
    requests, rps, p99, worst = load(endpoint, server.port, args, cookie, work, connections)
    cpu, (v1, i1) = run.cpu_seconds(pid) - cpu0, run.switches(pid)
    result = {"measure": name, "server": label, "rps": rps, "p99_ms": p99, "max_ms": worst,
              "cpu_us": cpu / requests * 1e6, "voluntary": (v1 - v0) / requests,
              "involuntary": (i1 - i0) / requests}
    print(f"  {name:<38} {label:<9} {rps:>9,.0f} req/s  p99 {p99:6.2f} ms  {result['cpu_us']:6.1f} µs CPU"
          f"  {result['voluntary']:.3f}+{result['involuntary']:.3f} switches/req", flush=True)
    return result


def psql(base, sql):
    subprocess.run(["psql", base, "-qAtc", sql], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def instructions(argv, env, ready, endpoint, connections=32):
    """Whole-process instructions per request under `connections` (callgrind):
    the difference of a 3 s and a 9 s run, over the difference of their requests."""
    counted = []
    for seconds in (3, 9):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "callgrind.out")
            port = run.free_port()
            full_env = dict(env(d, port))
            if endpoint != "ceiling":
                run.add_user(d, binary=argv(port)[0],
                             **{k: v for k, v in full_env.items() if k == "DATABASE_URL"})
            proc = subprocess.Popen(run.pinned(0, ["valgrind", "--tool=callgrind", "--dump-instr=no",
                                                   f"--callgrind-out-file={out}"] + argv(port)),
                                    env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                run.wait_http(port, ready[0], timeout=120, method=ready[1])
                args = argparse.Namespace(duration=seconds, connections=connections)
                kind = "logout" if endpoint == "ceiling" else endpoint
                cookie = run.sign_in(port) if kind in ("session", "verify") else None
                requests = load(kind, port, args, cookie, d, connections)[0]
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(180)
            total = int(re.search(r"^summary:\s+(\d+)", open(out).read(), re.M).group(1))
            counted.append((total, requests))
    (a, na), (b, nb) = counted
    return (b - a) / (nb - na)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", help="an earlier build's chronos binary")
    ap.add_argument("--callgrind", action="store_true", help="also count instructions (minutes)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    measures = [m for m in MEASURES if not (args.no_postgres and m[3] == "postgres")]
    builds = {"this": run.CHRONOS}
    if args.baseline:
        builds["baseline"] = args.baseline
    base = os.environ.get("POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    schemas = {label: f"chronos_hotpath_{uuid.uuid4().hex[:12]}" for label in builds}
    servers, cookies = {}, {}
    try:
        for label, binary in builds.items():
            for engine in ("sqlite", "postgres"):
                if engine == "postgres" and args.no_postgres:
                    continue
                extra = {}
                if engine == "postgres":
                    psql(base, f"CREATE SCHEMA {schemas[label]}")
                    extra["DATABASE_URL"] = f"{base}?options=-csearch_path%3D{schemas[label]}"
                d = tempfile.mkdtemp()
                run.add_user(d, binary=binary, **extra)
                port = run.free_port()
                servers[(label, engine)] = run.Server(label, [binary], run.chronos_env(d, port, **extra), port)
            cookies[label] = run.sign_in(servers[(label, "sqlite")].port)
        port = run.free_port()
        servers[("ceiling", "sqlite")] = run.Server("ceiling", [run.CEILING, f"127.0.0.1:{port}"], dict(os.environ),
                                                    port, ready_path="/auth/logout", ready_method="POST")
        work = tempfile.mkdtemp()
        rounds = []
        for r in range(args.rounds):
            print(f"round {r + 1}", flush=True)
            results = []
            for name, endpoint, connections, engine in measures:
                labels = list(builds) + (["ceiling"] if endpoint == "logout" else [])
                labels = labels[r % len(labels):] + labels[:r % len(labels)]
                for label in labels:
                    results.append(measure(name, endpoint, label, servers[(label, engine)], args,
                                           cookies.get(label), work, connections or args.connections))
            rounds.append(results)
    finally:
        for server in servers.values():
            server.stop()
        if not args.no_postgres:
            for schema in schemas.values():
                try:
                    psql(base, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                except subprocess.CalledProcessError:
                    pass

    counted = {}
    if args.callgrind:
        ready = ("/health", "GET")
        for label, binary in builds.items():
            for endpoint in ("logout", "session", "verify", "refresh"):
                counted[(label, endpoint)] = instructions(
                    lambda port, b=binary: [b], lambda d, port: run.chronos_env(d, port), ready, endpoint)
                print(f"  {endpoint:<8} {label:<9} {counted[(label, endpoint)]:,.0f} instructions", flush=True)
        counted[("ceiling", "logout")] = instructions(
            lambda port: [run.CEILING, f"127.0.0.1:{port}"], lambda d, port: dict(os.environ),
            ("/auth/logout", "POST"), "ceiling")
        print(f"  logout   ceiling   {counted[('ceiling', 'logout')]:,.0f} instructions", flush=True)

    def med(name, label, key):
        return statistics.median(x[key] for rr in rounds for x in rr
                                 if x["measure"] == name and x["server"] == label)

    lines = [f"logout, session, verify and refresh at {args.connections} connections (refresh also at 2), "
             f"{args.duration} s runs, {args.rounds} interleaved rounds; every server pinned to CPU 0, the load "
             "generator to CPU 1; CPU per request is the server's utime+stime, switches per request are "
             "voluntary+involuntary over every thread of the server (/proc). Medians of the rounds:", "",
             "| measured | server | req/s | p99 ms | max ms | µs CPU/req | voluntary switches/req "
             "| involuntary switches/req |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, endpoint, _, _ in measures:
        for label in list(builds) + (["ceiling"] if endpoint == "logout" else []):
            worst = "" if endpoint != "refresh" else f"{med(name, label, 'max_ms'):.1f}"
            lines.append(f"| {name} | {label} | {med(name, label, 'rps'):,.0f} "
                         f"| {med(name, label, 'p99_ms'):.2f} | {worst} | {med(name, label, 'cpu_us'):.1f} "
                         f"| {med(name, label, 'voluntary'):.3f} | {med(name, label, 'involuntary'):.3f} |")
    lines += ["", "| ratio (medians) | throughput | CPU per request |", "|---|---:|---:|"]
    for name in ("logout", "session", "verify"):
        lines.append(f"| {name}: this / ceiling's logout | {med(name, 'this', 'rps') / med('logout', 'ceiling', 'rps'):.2f} "
                     f"| {med(name, 'this', 'cpu_us') / med('logout', 'ceiling', 'cpu_us'):.2f} |")
    for name, endpoint, _, _ in measures:
        if endpoint == "refresh":
            lines.append(f"| {name}: this / session | {med(name, 'this', 'rps') / med('session', 'this', 'rps'):.2f} "
                         f"| {med(name, 'this', 'cpu_us') / med('session', 'this', 'cpu_us'):.2f} |")
    if args.baseline:
        for name, _, _, _ in measures:
            lines.append(f"| {name}: this / baseline "
                         f"| {med(name, 'this', 'rps') / med(name, 'baseline', 'rps'):.2f} "
                         f"| {med(name, 'this', 'cpu_us') / med(name, 'baseline', 'cpu_us'):.2f} |")
    if counted:
        labels = list(builds) + ["ceiling"]
        lines += ["", f"Instructions per request, whole process, under {args.connections} connections (callgrind; "
                  "the difference of a 3 s and a 9 s run):", "",
                  "| endpoint | " + " | ".join(labels) + " | this / ceiling's logout |",
                  "|---|" + "---:|" * (len(labels) + 1)]
        for endpoint in ("logout", "session", "verify", "refresh"):
            cells = [f"{counted[(label, endpoint)]:,.0f}" if (label, endpoint) in counted else ""
                     for label in labels]
            lines.append(f"| {endpoint} | " + " | ".join(cells) +
                         f" | {counted[('this', endpoint)] / counted[('ceiling', 'logout')]:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    record.write("hotpath", "bench/hotpath.py", text,
                 data={"rounds": rounds, "instructions": {f"{k[0]} {k[1]}": v for k, v in counted.items()}})


if __name__ == "__main__":
    main()
