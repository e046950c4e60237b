#!/usr/bin/env python3
"""The hot path in figures a busy machine cannot fake (issue 23): for
logout, session, verify and refresh at the same connections, in
interleaved rounds, throughput and p99 *and* CPU per request (utime+stime
of the server, /proc) *and* context switches per request (voluntary and
involuntary, every thread of the server, /proc/PID/task/*/status), for
this build, the bare hyper ceiling (logout only: it serves nothing else)
and, given `--baseline`, an earlier build; then, with `--callgrind`,
instructions per request inside the envelope (bench/instructions.py's
count) for both builds.

    cargo build --release --examples && cargo build --release
    python3 bench/hotpath.py [--baseline /path/to/earlier/chronos] [--callgrind]
        [--connections 32] [--duration 5] [--rounds 3]

Every server is pinned to CPU 0 and the load generator to CPU 1. Logout
is sent without cookies (as bench/run.py does), session and verify with
one signed-in session's cookie, refresh by bench/refresh_load.rs (which
follows the rotating cookies), a fresh set of signed-in sessions per
measurement. Chronos runs with its defaults (access log on, to a file).
Writes bench/results/runs/<date>-hotpath-<time>.md (and .json).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import instructions  # noqa: E402
import record  # noqa: E402
import run  # noqa: E402

REFRESH_LOAD = os.path.join(run.RELEASE, "examples", "refresh_load")
ENDPOINTS = ["logout", "session", "verify", "refresh"]





def load(endpoint, port, args, cookie, work):
    """Runs the load; (requests, req/s, p99 ms)."""
    if endpoint == "refresh":
        path = run.sessions_file(port, args.connections, os.path.join(work, f"sessions-{port}.txt"))
        out = subprocess.run(run.pinned(1, [REFRESH_LOAD, f"http://127.0.0.1:{port}", path,
                                            str(args.connections), str(args.duration)]),
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out)
        if r["errors"]:
            raise RuntimeError(f"refresh: {r['errors']} answers not 200")
        return r["requests"], r["rps"], r["p99_ms"]
    path, method, headers = {
        "logout": ("/auth/logout", "POST", ()),
        "session": ("/auth/session", "GET", (f"Cookie: {cookie}",)),
        "verify": ("/auth/verify", "GET", (f"Cookie: {cookie}",)),
    }[endpoint]
    r = run.wrk(f"http://127.0.0.1:{port}{path}", args, method, headers)
    if r["non2xx"]:
        raise RuntimeError(f"{endpoint}: {r['non2xx']} answers not 2xx")
    return r["requests"], r["rps"], r["p99_ms"]


def measure(label, endpoint, server, args, cookie, work):
    # A 1 s warm-up (not for refresh: its sign-ins warm it).
    if endpoint != "refresh":
        warm = argparse.Namespace(**{**vars(args), "duration": 1})
        load(endpoint, server.port, warm, cookie, work)
    pid = server.proc.pid
    cpu0, (v0, i0) = run.cpu_seconds(pid), run.switches(pid)
    requests, rps, p99 = load(endpoint, server.port, args, cookie, work)
    cpu, (v1, i1) = run.cpu_seconds(pid) - cpu0, run.switches(pid)
    result = {"endpoint": endpoint, "server": label, "rps": rps, "p99_ms": p99,
              "cpu_us": cpu / requests * 1e6, "voluntary": (v1 - v0) / requests,
              "involuntary": (i1 - i0) / requests}
    print(f"  {endpoint:<8} {label:<9} {rps:>10,.0f} req/s  p99 {p99:6.2f} ms  {result['cpu_us']:6.1f} µs CPU"
          f"  {result['voluntary']:.2f}+{result['involuntary']:.2f} switches/req", flush=True)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", help="an earlier build's chronos binary")
    ap.add_argument("--callgrind", action="store_true", help="also count instructions (minutes)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    builds = {"this": run.CHRONOS}
    if args.baseline:
        builds["baseline"] = args.baseline
    servers, dirs = {}, []
    try:
        for label, binary in builds.items():
            d = tempfile.mkdtemp()
            dirs.append(d)
            run.add_user(d)
            port = run.free_port()
            servers[label] = run.Server(label, [binary], run.chronos_env(d, port), port)
        port = run.free_port()
        servers["ceiling"] = run.Server("ceiling", [run.CEILING, f"127.0.0.1:{port}"], dict(os.environ), port,
                                        ready_path="/auth/logout", ready_method="POST")
        cookies = {label: run.sign_in(servers[label].port) for label in builds}
        work = tempfile.mkdtemp()
        rounds = []
        for r in range(args.rounds):
            print(f"round {r + 1}", flush=True)
            results = []
            for endpoint in ENDPOINTS:
                labels = list(builds) + (["ceiling"] if endpoint == "logout" else [])
                labels = labels[r % len(labels):] + labels[:r % len(labels)]
                for label in labels:
                    results.append(measure(label, endpoint, servers[label], args, cookies.get(label), work))
            rounds.append(results)
    finally:
        for server in servers.values():
            server.stop()

    counted = {}
    if args.callgrind:
        paths = {"logout": "/auth/logout", "session": "/auth/session", "verify": "/auth/verify",
                 "refresh": "/auth/refresh"}
        for label, binary in builds.items():
            for endpoint, path in paths.items():
                counted[(label, endpoint)] = instructions.per_request(binary, path, instructions.TOGGLE)
                print(f"  {endpoint:<8} {label:<9} {counted[(label, endpoint)]:,.0f} instructions", flush=True)

    def med(endpoint, label, key):
        return statistics.median(x[key] for rr in rounds for x in rr
                                 if x["endpoint"] == endpoint and x["server"] == label)

    lines = [f"logout, session, verify and refresh at {args.connections} connections, {args.duration} s runs, "
             f"{args.rounds} interleaved rounds; every server pinned to CPU 0, the load generator to CPU 1; "
             "CPU per request is the server's utime+stime, switches per request are voluntary+involuntary "
             "over every thread of the server (/proc). Medians of the rounds:", "",
             "| endpoint | server | req/s | p99 ms | µs CPU/req | voluntary switches/req "
             "| involuntary switches/req |", "|---|---|---:|---:|---:|---:|---:|"]
    for endpoint in ENDPOINTS:
        for label in list(builds) + (["ceiling"] if endpoint == "logout" else []):
            lines.append(f"| {endpoint} | {label} | {med(endpoint, label, 'rps'):,.0f} "
                         f"| {med(endpoint, label, 'p99_ms'):.2f} | {med(endpoint, label, 'cpu_us'):.1f} "
                         f"| {med(endpoint, label, 'voluntary'):.2f} | {med(endpoint, label, 'involuntary'):.2f} |")
    lines += ["", "| ratio (medians) | throughput | CPU per request |", "|---|---:|---:|",
              f"| logout: this / ceiling | {med('logout', 'this', 'rps') / med('logout', 'ceiling', 'rps'):.2f} "
              f"| {med('logout', 'this', 'cpu_us') / med('logout', 'ceiling', 'cpu_us'):.2f} |"]
    for endpoint in ENDPOINTS[1:]:
        lines.append(f"| {endpoint}: this / session | {med(endpoint, 'this', 'rps') / med('session', 'this', 'rps'):.2f} "
                     f"| {med(endpoint, 'this', 'cpu_us') / med('session', 'this', 'cpu_us'):.2f} |")
    if args.baseline:
        for endpoint in ENDPOINTS:
            lines.append(f"| {endpoint}: this / baseline "
                         f"| {med(endpoint, 'this', 'rps') / med(endpoint, 'baseline', 'rps'):.2f} "
                         f"| {med(endpoint, 'this', 'cpu_us') / med(endpoint, 'baseline', 'cpu_us'):.2f} |")
    if counted:
        lines += ["", "Instructions per request inside the envelope (callgrind, bench/instructions.py's count):", "",
                  "| endpoint | " + " | ".join(builds) + " |", "|---|" + "---:|" * len(builds)]
        for endpoint in ENDPOINTS:
            lines.append(f"| {endpoint} | " + " | ".join(f"{counted[(label, endpoint)]:,.0f}" for label in builds)
                         + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    record.write("hotpath", "bench/hotpath.py", text,
                 data={"rounds": rounds, "instructions": {f"{k[0]} {k[1]}": v for k, v in counted.items()}})


if __name__ == "__main__":
    main()
