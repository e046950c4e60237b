#!/usr/bin/env python3
"""What a device-bound session costs the hot path (issue 25): `GET
/auth/session` on a bound session (session cookie + bound cookie, checked
with one HMAC) against an unbound one on the same DBSC=on server, and
against the same build with DBSC off, in interleaved rounds: throughput,
p99, CPU per request (utime+stime of the server, /proc) and context
switches per request (every thread); with `--callgrind`, whole-process
instructions per request under the same connections (the difference of a
3 s and a 9 s run). Target: bound within 5% of unbound.

    cargo build --release --examples && cargo build --release
    python3 bench/dbsc.py [--connections 32] [--duration 5] [--rounds 5] [--callgrind]

The server is pinned to CPU 0 and wrk to CPU 1. The bound session is made
as a browser would: sign in, refresh (its answer offers registration),
then POST /auth/dbsc/register with a proof signed by a fresh ES256 key
(bench/dbsc_proof.rs). DBSC_COOKIE_TTL is a day, so the bound cookie
outlives the run. Writes bench/results/runs/<date>-dbsc-<time>.md.
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import record  # noqa: E402
import run  # noqa: E402

PROOF = os.path.join(run.RELEASE, "examples", "dbsc_proof")


def post(port, path, jar, headers):
    return run.http_request(port, jar, "POST", path, headers=headers)[0]


def bound_cookies(port):
    """Signs in, takes the registration offer of the refresh, binds a key;
    the Cookie header of the bound session."""
    jar = {}
    run.sign_in(port, jar)
    r = post(port, "/auth/refresh", jar, {"X-CSRF-Token": jar["chronos_csrf"]})
    offer = r.headers["Secure-Session-Registration"]
    challenge = re.search(r'challenge="([^"]+)"', offer).group(1)
    path = re.search(r'path="([^"]+)"', offer).group(1)
    proof = subprocess.run([PROOF, challenge], capture_output=True, text=True, check=True).stdout.strip()
    r = post(port, path, jar, {"Secure-Session-Response": f'"{proof}"'})
    if r.status != 200 or "chronos_bound" not in jar:
        raise RuntimeError(f"registration answered {r.status}")
    return f"chronos_session={jar['chronos_session']}; chronos_bound={jar['chronos_bound']}"


def env(d, port, dbsc):
    extra = {"DBSC": "on", "DBSC_COOKIE_TTL": "86400"} if dbsc else {}
    return run.chronos_env(d, port, **extra)


def measure(name, server, cookie, args):
    url = f"http://127.0.0.1:{server.port}/auth/session"
    warm = argparse.Namespace(**{**vars(args), "duration": 1})
    run.wrk(url, warm, "GET", (f"Cookie: {cookie}",))
    pid = server.proc.pid
    cpu0, (v0, i0) = run.cpu_seconds(pid), run.switches(pid)
    r = run.wrk(url, args, "GET", (f"Cookie: {cookie}",))
    cpu, (v1, i1) = run.cpu_seconds(pid) - cpu0, run.switches(pid)
    if r["non2xx"]:
        raise RuntimeError(f"{name}: {r['non2xx']} answers not 2xx")
    n = r["requests"]
    result = {"measure": name, "rps": r["rps"], "p99_ms": r["p99_ms"], "cpu_us": cpu / n * 1e6,
              "voluntary": (v1 - v0) / n, "involuntary": (i1 - i0) / n}
    print(f"  {name:<20} {r['rps']:>9,.0f} req/s  p99 {r['p99_ms']:6.3f} ms  {result['cpu_us']:6.2f} µs CPU"
          f"  {result['voluntary']:.3f}+{result['involuntary']:.3f} switches/req", flush=True)
    return result


def instructions(kind, connections):
    """Whole-process instructions per /auth/session under callgrind."""
    counted = []
    for seconds in (3, 9):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "callgrind.out")
            port = run.free_port()
            run.add_user(d)
            proc = subprocess.Popen(run.pinned(0, ["valgrind", "--tool=callgrind", "--dump-instr=no",
                                                   f"--callgrind-out-file={out}", run.CHRONOS]),
                                    env=env(d, port, kind != "DBSC off"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                run.wait_http(port, timeout=120)
                cookie = bound_cookies(port) if kind == "bound" else run.sign_in(port)
                a = argparse.Namespace(duration=seconds, connections=connections)
                r = run.wrk(f"http://127.0.0.1:{port}/auth/session", a, "GET", (f"Cookie: {cookie}",))
                if r["non2xx"]:
                    raise RuntimeError(f"{kind}: answers not 2xx under callgrind")
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(180)
            total = int(re.search(r"^summary:\s+(\d+)", open(out).read(), re.M).group(1))
            counted.append((total, r["requests"]))
    (a, na), (b, nb) = counted
    return (b - a) / (nb - na)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--callgrind", action="store_true")
    args = ap.parse_args()
    servers = {}
    try:
        for label, dbsc in (("on", True), ("off", False)):
            d = tempfile.mkdtemp()
            run.add_user(d)
            port = run.free_port()
            servers[label] = run.Server(label, [run.CHRONOS], env(d, port, dbsc), port)
        bound = bound_cookies(servers["on"].port)
        unbound = run.sign_in(servers["on"].port)
        # The same bytes on the wire as the bound session's (a bound cookie
        # of the right length that no binding asks for): what the check
        # costs apart from the longer request.
        padded = unbound + "; chronos_bound=" + bound.split("chronos_bound=", 1)[1]
        cookies = {"bound": bound, "unbound": unbound, "unbound, same bytes": padded,
                   "DBSC off": run.sign_in(servers["off"].port)}
        where = {"bound": "on", "unbound": "on", "unbound, same bytes": "on", "DBSC off": "off"}
        order = list(cookies)
        rounds = []
        for r in range(args.rounds):
            print(f"round {r + 1}", flush=True)
            labels = order[r % len(order):] + order[:r % len(order)]
            rounds.append([measure(label, servers[where[label]], cookies[label], args) for label in labels])
    finally:
        for server in servers.values():
            server.stop()

    counted = {}
    if args.callgrind:
        for kind in ("bound", "unbound", "DBSC off"):
            counted[kind] = instructions(kind, args.connections)
            print(f"  {kind:<16} {counted[kind]:,.0f} instructions/request", flush=True)

    def med(label, key):
        return statistics.median(x[key] for rr in rounds for x in rr if x["measure"] == label)

    lines = [f"`GET /auth/session` at {args.connections} connections, {args.duration} s runs, {args.rounds} "
             "interleaved rounds, the server pinned to CPU 0 and wrk to CPU 1; CPU per request is the "
             "server's utime+stime, switches are summed over every thread (/proc). Medians of the rounds:",
             "", "| session | req/s | p99 ms | µs CPU/req | voluntary switches/req | involuntary switches/req |",
             "|---|---:|---:|---:|---:|---:|"]
    for label in order:
        lines.append(f"| {label} | {med(label, 'rps'):,.0f} | {med(label, 'p99_ms'):.3f} "
                     f"| {med(label, 'cpu_us'):.2f} | {med(label, 'voluntary'):.3f} "
                     f"| {med(label, 'involuntary'):.3f} |")
    lines += ["", "| ratio (medians) | throughput | CPU per request |", "|---|---:|---:|"]
    for a, b in (("bound", "unbound"), ("bound", "unbound, same bytes"), ("unbound", "DBSC off")):
        lines.append(f"| {a} / {b} | {med(a, 'rps') / med(b, 'rps'):.3f} "
                     f"| {med(a, 'cpu_us') / med(b, 'cpu_us'):.3f} |")
    if counted:
        lines += ["", f"Instructions per request, whole process, under {args.connections} connections "
                  "(callgrind; the difference of a 3 s and a 9 s run):", "",
                  "| session | instructions/req | / unbound |", "|---|---:|---:|"]
        for kind in counted:
            lines.append(f"| {kind} | {counted[kind]:,.0f} | {counted[kind] / counted['unbound']:.3f} |")
        lines += ["", "Under callgrind, sha2 takes its portable SHA-256 (the profile shows "
                  "sha2::sha256::soft, not the CPU's SHA instructions), so the bound cookie's HMAC counts several times what it costs natively; "
                  "the CPU figures above are the native ones."]
    text = "\n".join(lines) + "\n"
    print(text)
    record.write("dbsc", "bench/dbsc.py", text, data={"rounds": rounds, "instructions": counted})


if __name__ == "__main__":
    main()
