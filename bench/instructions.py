#!/usr/bin/env python3
"""Instructions per request inside the security envelope (the routes
included, hyper's parsing and the kernel not), counted by callgrind: exact
and repeatable where wall-clock throughput on a shared VM is not. Compares
this build with an earlier binary, endpoint by endpoint, or one binary in
two configurations (logout, session, verify and refresh by default; a
refresh carries the browser's rotated cookies from one to the next):

    python3 bench/instructions.py --baseline /path/to/earlier/chronos
    # what metrics cost per logout (same binary, metrics on vs off):
    python3 bench/instructions.py --baseline target/release/chronos \
        --env METRICS_BIND=127.0.0.1:0 --paths /auth/logout --out instructions-metrics.md

Writes a new run file, bench/results/runs/<date>-<kind>-<time>.md, where the
kind is --out without its extension (default `instructions`; e.g.
`instructions-metrics`), and points bench/results/LATEST at it
(bench/record.py). The earlier binary's envelope
function was `Secured::serve` before issue 8 and `Envelope::serve` after;
both names are tried.
"""
import argparse
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import record  # noqa: E402
import run  # noqa: E402

TOGGLE = "*Envelope*serve*"
OLD_TOGGLE = "*Secured*serve*"


def count(binpath, path, n, toggle, env=()):
    with tempfile.TemporaryDirectory() as d:
        # A shared database (PostgreSQL) may hold the account from an
        # earlier count: an existing account is fine.
        subprocess.run([binpath, "user", "add", run.EMAIL], input=run.PASSWORD + "\n", text=True,
                       env={"PATH": os.environ["PATH"], "DATA_DIR": d, **dict(env)},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = run.free_port()
        out = os.path.join(d, "callgrind.out")
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--toggle-collect={toggle}",
                                 f"--callgrind-out-file={out}", binpath],
                                env=run.chronos_env(d, port, **dict(env)), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        run.wait_http(port, timeout=60)
        jar = {}
        cookie = run.sign_in(port, jar)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(n):
            if path == "/auth/refresh":
                # A browser's refresh: its cookies and CSRF header, then the
                # rotated cookies for the next one.
                conn.request("POST", path, headers={
                    "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items()),
                    "X-CSRF-Token": jar["chronos_csrf"]})
                r = conn.getresponse()
                r.read()
                assert r.status == 200, r.status
                for line in r.headers.get_all("Set-Cookie") or []:
                    name, value = line.split(";", 1)[0].split("=", 1)
                    jar[name] = value
            elif path == "/auth/logout":
                # Logout without cookies, as the load benchmark sends it.
                conn.request("POST", path)
                conn.getresponse().read()
            else:
                conn.request("GET", path, headers={"Cookie": cookie})
                conn.getresponse().read()
        conn.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        text = open(out).read()
        return int(re.search(r"^summary:\s+(\d+)", text, re.M).group(1))


def per_request(binpath, path, toggle, env=()):
    # The difference of two runs cancels start-up and sign-in.
    return (count(binpath, path, 1100, toggle, env) - count(binpath, path, 100, toggle, env)) / 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--env", action="append", default=[], metavar="K=V",
                    help="a variable for this build's server only")
    ap.add_argument("--baseline-env", action="append", default=[], metavar="K=V",
                    help="a variable for the baseline's server only")
    ap.add_argument("--paths", nargs="+",
                    default=["/auth/logout", "/auth/session", "/auth/verify", "/auth/refresh"])
    ap.add_argument("--out", default="instructions.md",
                    help="names the run's kind: instructions-metrics.md -> runs/<date>-instructions-metrics-<time>.md")
    args = ap.parse_args()
    env = [tuple(kv.split("=", 1)) for kv in args.env]
    baseline_env = [tuple(kv.split("=", 1)) for kv in args.baseline_env]
    lines = ["| endpoint | this build | baseline | ratio |", "|---|---:|---:|---:|"]
    for path in args.paths:
        ours = per_request(run.CHRONOS, path, TOGGLE, env)
        theirs = per_request(args.baseline, path, TOGGLE, baseline_env)
        if theirs <= 0:
            theirs = per_request(args.baseline, path, OLD_TOGGLE, baseline_env)
        lines.append(f"| {path} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.3f} |")
        print(lines[-1], flush=True)
    kind = os.path.splitext(os.path.basename(args.out))[0]
    record.write(kind, "bench/instructions.py",
                 "Instructions per request inside the envelope (callgrind), "
                 f"baseline {os.path.basename(args.baseline)} {' '.join(args.baseline_env)}, "
                 f"this build {' '.join(args.env)}\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
