#!/usr/bin/env python3
"""The load benchmark: Chronos against the ceiling (a bare hyper server that
sends logout's exact bytes) and the original Python stack, in one run.

    bench/run.sh              # full: 15 s per run, median of 3
    bench/run.sh --quick      # smoke: 2 s, one run

Servers are pinned to CPU 0 and wrk to CPU 1 (when there are two CPUs).
Results are printed and written to a new run file, bench/results/runs/<date>-load-<time>.{md,json}
(bench/record.py: a machine header, never overwritten; bench/results/LATEST points at it).
"""
import argparse
import glob
import http.client
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
CHRONOS = os.path.join(RELEASE, "chronos")
CEILING = os.path.join(RELEASE, "examples", "ceiling")
BASELINE = os.path.join(RELEASE, "examples", "verify_baseline")
LIMITER = os.path.join(RELEASE, "examples", "limiter_memory")
VENV = os.path.join(ROOT, "bench", ".venv")
POST_LUA = os.path.join(ROOT, "bench", "post.lua")
UNLIMITED = "1000000000/second"
EMAIL, PASSWORD = "bench@example.com", "benchmark password"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu, argv):
    if os.cpu_count() and os.cpu_count() >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)] + argv
    return argv


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def rss_mib(pid):
    """Resident memory now (not the peak)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid):
    """utime + stime of process `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def switches(pid):
    """(voluntary, involuntary) context switches summed over every thread of `pid`."""
    vol = invol = 0
    for status in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(status) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
        except OSError:
            pass
    return vol, invol


def sessions_file(port, n, path):
    """Signs in `n` times; one `session refresh csrf` line each (for bench/refresh_load.rs)."""
    with open(path, "w") as f:
        for _ in range(n):
            jar = {}
            sign_in(port, jar)
            f.write(f"{jar['chronos_session']} {jar['chronos_refresh']} {jar['chronos_csrf']}\n")
    return path


def wait_http(port, path="/health", timeout=15.0, method="GET"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request(method, path)
            status = conn.getresponse().status
            conn.close()
            if status < 500:
                return True
        except OSError:
            time.sleep(0.002)
    raise RuntimeError(f"server on {port} did not answer {path}")


class Server:
    def __init__(self, name, argv, env, port, ready_path="/health", ready_method="GET", cwd=None):
        self.name, self.port = name, port
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(pinned(0, argv), env=env, cwd=cwd,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_http(port, ready_path, method=ready_method)

    def rss(self):
        return peak_rss_mib(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def chronos_env(data_dir, port, **extra):
    env = {"PATH": os.environ.get("PATH", ""), "BIND": f"127.0.0.1:{port}", "DATA_DIR": data_dir,
           "RATE_LIMIT_AUTH": UNLIMITED}
    env.update(extra)
    return env


WRK_RE = {
    "rps": re.compile(r"Requests/sec:\s+([\d.]+)"),
    "non2xx": re.compile(r"Non-2xx or 3xx responses:\s+(\d+)"),
    "requests": re.compile(r"(\d+) requests in"),
}


def parse_latency(text, pct):
    m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url, args, method="GET", headers=()):
    argv = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    if method == "POST":
        argv += ["-s", POST_LUA]
    for h in headers:
        argv += ["-H", h]
    out = subprocess.run(pinned(1, argv + [url]), capture_output=True, text=True, check=True).stdout
    return {
        "rps": float(WRK_RE["rps"].search(out).group(1)),
        "p50_ms": parse_latency(out, 50),
        "p99_ms": parse_latency(out, 99),
        "non2xx": int(WRK_RE["non2xx"].search(out).group(1)) if WRK_RE["non2xx"].search(out) else 0,
        "requests": int(WRK_RE["requests"].search(out).group(1)),
    }


def measure(label, url, args, method="GET", headers=(), expect_non2xx=False):
    # A short warm-up, then the median of the runs (by throughput).
    subprocess.run(pinned(1, ["wrk", "-t1", f"-c{args.connections}", "-d1s"]
                          + (["-s", POST_LUA] if method == "POST" else [])
                          + sum([["-H", h] for h in headers], []) + [url]),
                   capture_output=True, check=True)
    runs = [wrk(url, args, method, headers) for _ in range(args.runs)]
    runs.sort(key=lambda r: r["rps"])
    median = runs[len(runs) // 2]
    bad = [r for r in runs if (r["non2xx"] == 0) == expect_non2xx]
    if bad:
        raise RuntimeError(f"{label}: unexpected status mix {bad}")
    all_runs = ", ".join(format(r["rps"], ",.0f") for r in runs)
    print(f"  {label:<48} {median['rps']:>10,.0f} req/s  p50 {median['p50_ms']:.3f} ms"
          f"  p99 {median['p99_ms']:.3f} ms   (runs: {all_runs})", flush=True)
    return dict(median, label=label, runs=[r["rps"] for r in runs])


def raw_response(port, request):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def normalized(response):
    text = response.decode("latin-1")
    text = re.sub(r"(?im)^date: .*$", "date: -", text)
    return re.sub(r"(?im)^x-request-id: .*$", "x-request-id: -", text)


def http_request(port, jar, method, path, body=None, headers=None):
    """One request with the cookies of `jar`, which keeps those the answer
    sets (and drops those it clears): (response, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = dict(headers or {})
    if jar:
        h["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    for line in r.headers.get_all("Set-Cookie") or []:
        name, value = line.split(";", 1)[0].split("=", 1)
        if value:
            jar[name] = value
        else:
            jar.pop(name, None)
    conn.close()
    return r, data


def sign_in(port, jar=None):
    """The browser flow over plain HTTP: login, sign-in page, form, code exchange."""
    jar = {} if jar is None else jar

    def request(method, path, body=None, headers=None):
        return http_request(port, jar, method, path, body, headers)

    _, data = request("GET", "/auth/google/login")
    page_url = urllib.parse.urlsplit(json.loads(data)["redirectUrl"])
    _, html = request("GET", f"{page_url.path}?{page_url.query}")
    form = html.decode().split('id="signin"', 1)[1].split("</form>", 1)[0]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
    fields = {k: v.replace("&amp;", "&").replace("&quot;", '"').replace("&#x27;", "'") for k, v in fields.items()}
    fields.update(email=EMAIL, password=PASSWORD)
    r, _ = request("POST", "/auth/signin", urllib.parse.urlencode(fields),
                   {"Content-Type": "application/x-www-form-urlencoded",
                    "Origin": f"http://127.0.0.1:{port}"})
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["Location"]).query)["code"][0]
    r, _ = request("POST", "/auth/web/callback", json.dumps({"code": code}),
                   {"Content-Type": "application/json"})
    assert r.status == 200, r.status
    return f"chronos_session={jar['chronos_session']}"


def flow_latencies(port):
    """One client, one request at a time: how long the session lifecycle takes."""
    def timed(f, n):
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            f()
            samples.append((time.perf_counter() - started) * 1000)
        return {"median_ms": statistics.median(samples), "n": n}

    jar = {}
    signin = timed(lambda: sign_in(port, jar), 20)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def refresh():
        conn.request("POST", "/auth/refresh", headers={
            "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items()),
            "X-CSRF-Token": jar["chronos_csrf"]})
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
        for line in r.headers.get_all("Set-Cookie") or []:
            name, value = line.split(";", 1)[0].split("=", 1)
            jar[name] = value

    def session():
        conn.request("GET", "/auth/session", headers={"Cookie": f"chronos_session={jar['chronos_session']}"})
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status

    result = {"sign_in": signin, "refresh": timed(refresh, 200), "session_check": timed(session, 2000)}
    conn.close()
    return result


def signin_storm(port, concurrency, seconds):
    """`concurrency` clients signing in back to back (login, page, form post;
    after a 503 they wait its Retry-After) for `seconds`: how many got
    through (303), how many were told to come back (503), and nothing else."""
    import threading
    counts = {"303": 0, "503": 0, "other": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client():
        while time.monotonic() < deadline:
            jar = {}
            try:
                def request(method, path, body=None, headers=None):
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    h = dict(headers or {})
                    if jar:
                        h["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
                    conn.request(method, path, body=body, headers=h)
                    r = conn.getresponse()
                    data = r.read()
                    for line in r.headers.get_all("Set-Cookie") or []:
                        name, value = line.split(";", 1)[0].split("=", 1)
                        jar[name] = value
                    conn.close()
                    return r, data
                _, data = request("GET", "/auth/google/login")
                page_url = urllib.parse.urlsplit(json.loads(data)["redirectUrl"])
                _, html = request("GET", f"{page_url.path}?{page_url.query}")
                form = html.decode().split('id="signin"', 1)[1].split("</form>", 1)[0]
                fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
                fields.update(email=EMAIL, password=PASSWORD)
                r, _ = request("POST", "/auth/signin", urllib.parse.urlencode(fields),
                               {"Content-Type": "application/x-www-form-urlencoded",
                                "Origin": f"http://127.0.0.1:{port}"})
                key = str(r.status) if r.status in (303, 503) else "other"
                retry_after = float(r.headers.get("Retry-After") or 0)
            except (OSError, KeyError, IndexError, ValueError, http.client.HTTPException):
                key, retry_after = "other", 0
            with lock:
                counts[key] += 1
            # As a browser user would: come back when told to.
            time.sleep(retry_after)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def signin_pressure(data_dir, args):
    """Sign-in storms of 50 and 150 concurrent clients against a fresh
    server: its peak memory, what the clients got, and /auth/session's
    latency measured by wrk meanwhile, against the same server idle."""
    import threading
    out = []
    for concurrency in (50, 150):
        port = free_port()
        srv = Server("chronos", [CHRONOS], chronos_env(data_dir, port, RUST_LOG="info,chronos::access=off"), port)
        cookie = f"Cookie: {sign_in(port)}"
        url = f"http://127.0.0.1:{port}/auth/session"
        idle = wrk(url, args, "GET", (cookie,))
        rss_idle = peak_rss_mib(srv.proc.pid)
        result = {}
        storm = threading.Thread(target=lambda: result.update(signin_storm(port, concurrency, args.duration + 2)))
        storm.start()
        time.sleep(1)
        busy = wrk(url, args, "GET", (cookie,))
        storm.join()
        row = {"concurrency": concurrency, "signins": result, "peak_rss_mib": srv.rss(),
               "rss_before_mib": rss_idle,
               "session_idle": {k: idle[k] for k in ("rps", "p50_ms", "p99_ms")},
               "session_during": {k: busy[k] for k in ("rps", "p50_ms", "p99_ms")}}
        srv.stop()
        print(f"  {concurrency} concurrent sign-ins: {result}, peak RSS {row['peak_rss_mib']:.0f} MiB; "
              f"/auth/session p99 {idle['p99_ms']:.2f} ms idle -> {busy['p99_ms']:.2f} ms during "
              f"({busy['rps']:,.0f} req/s vs {idle['rps']:,.0f})", flush=True)
        out.append(row)
    return out


def add_user(data_dir, email=EMAIL, binary=CHRONOS, **extra):
    """Adds the benchmark's account with `binary` (the build that then
    serves the data: an older build refuses a database migrated further)."""
    env = {"PATH": os.environ.get("PATH", ""), "DATA_DIR": data_dir}
    env.update(extra)
    subprocess.run([binary, "user", "add", email], input=PASSWORD + "\n", text=True, check=True,
                   env=env, stdout=subprocess.DEVNULL)


def startup_ms(data_dir, fresh):
    """Process start to the first answered /health, in milliseconds."""
    port = free_port()
    if fresh:
        shutil.rmtree(data_dir, ignore_errors=True)
    started = time.monotonic()
    proc = subprocess.Popen([CHRONOS], env=chronos_env(data_dir, port),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(port)
        return (time.monotonic() - started) * 1000
    finally:
        proc.terminate()
        proc.wait()


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return {"cpu": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "rustc": rustc, "wrk": wrk_v, "python": platform.python_version()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2 s runs, one each (smoke test)")
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--no-python", action="store_true")
    ap.add_argument("--baseline", metavar="BIN",
                    help="an earlier chronos binary, measured on the same endpoints in the same run")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.runs = 2, 1

    results = {"machine": machine(), "config": vars(args), "rows": []}
    rows = results["rows"]
    print(f"machine: {results['machine']}")
    print(f"wrk -t1 -c{args.connections} -d{args.duration}s, median of {args.runs}; "
          f"servers on CPU 0, wrk on CPU 1\n", flush=True)
    work = tempfile.mkdtemp(prefix="chronos-bench-")
    data_dir = os.path.join(work, "data")
    try:
        # Start-up, on the embedded defaults.
        fresh = statistics.median(startup_ms(data_dir, True) for _ in range(5))
        warm = statistics.median(startup_ms(data_dir, False) for _ in range(5))
        results["startup_ms"] = {"first_start": fresh, "restart": warm}
        print(f"start-up to first answer: first start {fresh:.0f} ms, restart {warm:.0f} ms\n")

        # The ceiling, and a check that it sends the same bytes as Chronos.
        port = free_port()
        ceiling = Server("ceiling", [CEILING, f"127.0.0.1:{port}"], dict(os.environ), port,
                         ready_path="/auth/logout", ready_method="POST")
        cport = free_port()
        shutil.rmtree(data_dir, ignore_errors=True)
        probe = Server("chronos", [CHRONOS], chronos_env(data_dir, cport), cport)
        req = b"POST /auth/logout HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ours, theirs = normalized(raw_response(cport, req)), normalized(raw_response(port, req))
        probe.stop()
        if ours != theirs:
            print("ceiling and chronos differ:\n" + ours + "\n---\n" + theirs)
            sys.exit(1)
        print("ceiling sends logout's exact bytes (date and request id aside)")
        row = measure("ceiling: POST /auth/logout", f"http://127.0.0.1:{port}/auth/logout", args, "POST")
        ceiling_rps = row["rps"]
        rows.append(dict(row, server="ceiling", rss_mib=ceiling.rss()))
        ceiling.stop()

        # The original Python stack.
        python_rps = None
        if not args.no_python:
            port = free_port()
            py = Server("python", [os.path.join(VENV, "bin", "uvicorn"), "app:app", "--host",
                                   "127.0.0.1", "--port", str(port), "--workers", "1",
                                   "--no-access-log", "--log-level", "warning"],
                        dict(os.environ, RATE_LIMIT_AUTH=UNLIMITED), port,
                        ready_path="/auth/logout", ready_method="POST",
                        cwd=os.path.join(ROOT, "bench", "python"))
            row = measure("python: POST /auth/logout", f"http://127.0.0.1:{port}/auth/logout", args, "POST")
            python_rps = row["rps"]
            rows.append(dict(row, server="fastapi+slowapi (1 worker)", rss_mib=py.rss()))
            py.stop()

        # Chronos, defaults (access log on) but for the raised rate limit.
        shutil.rmtree(data_dir, ignore_errors=True)
        port = free_port()
        add_user(data_dir)
        chronos = Server("chronos", [CHRONOS], chronos_env(data_dir, port), port)
        results["flows"] = flow_latencies(port)
        print("one request at a time (median): " + ", ".join(
            f"{k} {v['median_ms']:.2f} ms" for k, v in results["flows"].items()))
        cookie = f"Cookie: {sign_in(port)}"
        base = f"http://127.0.0.1:{port}"
        for label, path, method, headers in [
            ("chronos: POST /auth/logout", "/auth/logout", "POST", ()),
            ("chronos: GET /auth/csrf", "/auth/csrf", "GET", ()),
            ("chronos: GET /auth/session", "/auth/session", "GET", (cookie,)),
            ("chronos: GET /auth/verify", "/auth/verify", "GET", (cookie,)),
        ]:
            row = measure(label, base + path, args, method, headers)
            rows.append(dict(row, server="chronos", rss_mib=chronos.rss()))
        chronos.stop()

        # The earlier binary, same endpoints, same run.
        if args.baseline:
            bdir = os.path.join(work, "baseline")
            port = free_port()
            subprocess.run([args.baseline, "user", "add", EMAIL], input=PASSWORD + "\n", text=True,
                           check=True, stdout=subprocess.DEVNULL,
                           env={"PATH": os.environ.get("PATH", ""), "DATA_DIR": bdir})
            base_srv = Server("baseline", [args.baseline], chronos_env(bdir, port), port)
            cookie = f"Cookie: {sign_in(port)}"
            base = f"http://127.0.0.1:{port}"
            for label, path, method, headers in [
                ("baseline: POST /auth/logout", "/auth/logout", "POST", ()),
                ("baseline: GET /auth/csrf", "/auth/csrf", "GET", ()),
                ("baseline: GET /auth/session", "/auth/session", "GET", (cookie,)),
                ("baseline: GET /auth/verify", "/auth/verify", "GET", (cookie,)),
            ]:
                row = measure(label, base + path, args, method, headers)
                rows.append(dict(row, server="baseline", rss_mib=base_srv.rss()))
            base_srv.stop()

        # Access log off: what the log line costs.
        port = free_port()
        chronos = Server("chronos", [CHRONOS],
                         chronos_env(data_dir, port, RUST_LOG="info,chronos::access=off"), port)
        cookie = f"Cookie: {sign_in(port)}"
        base = f"http://127.0.0.1:{port}"
        for label, path, method, headers in [
            ("chronos, access log off: POST /auth/logout", "/auth/logout", "POST", ()),
            ("chronos, access log off: GET /auth/csrf", "/auth/csrf", "GET", ()),
            ("chronos, access log off: GET /auth/session", "/auth/session", "GET", (cookie,)),
            ("chronos, access log off: GET /auth/verify", "/auth/verify", "GET", (cookie,)),
        ]:
            row = measure(label, base + path, args, method, headers)
            rows.append(dict(row, server="chronos (no access log)", rss_mib=chronos.rss()))
        chronos.stop()

        # One client held at 429 the whole time.
        port = free_port()
        chronos = Server("chronos", [CHRONOS],
                         chronos_env(data_dir, port, RATE_LIMIT_AUTH="1/hour"), port)
        row = measure("chronos, rate-limited: POST /auth/logout (429)",
                      f"http://127.0.0.1:{port}/auth/logout", args, "POST", expect_non2xx=True)
        rows.append(dict(row, server="chronos (429)", rss_mib=chronos.rss()))
        chronos.stop()

        # The revocation check on /auth/verify, one binary in three modes:
        # as shipped, without the check, and with 100k revoked sessions.
        for mode, label in [("normal", "verify, revocation check (as shipped)"),
                            ("none", "verify without revocation check"),
                            ("revoked:100000", "verify with 100k revoked sessions")]:
            port = free_port()
            srv = Server("baseline", [BASELINE, mode], chronos_env(data_dir, port), port)
            row = measure(f"chronos, {label}", f"http://127.0.0.1:{port}/auth/verify", args, "GET",
                          (f"Cookie: {sign_in(port)}",))
            rows.append(dict(row, server=f"chronos ({mode})", rss_mib=srv.rss()))
            srv.stop()

        # Sign-in storms: bounded hashing keeps memory flat and sessions fast.
        print("\nsign-in storms (access log off):")
        results["signin_pressure"] = signin_pressure(data_dir, args)

        # Each identity provider, same run: sign-in latency, session checks.
        print("\nidentity providers (tests/browser's oidc-provider and GoTrue test server):")
        import providers
        results["providers"] = providers.measure(args, work)

        # The limiter under one million distinct keys (in-process).
        out = subprocess.run([LIMITER], capture_output=True, text=True, check=True).stdout
        results["limiter"] = dict(line.split("=", 1) for line in out.split())
        print(f"\nlimiter, 1M distinct keys: {results['limiter']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    for row in rows:
        row["vs_ceiling"] = row["rps"] / ceiling_rps
        row["vs_python"] = row["rps"] / python_rps if python_rps else None
    write_results(results)


def write_results(results):
    import providers
    import record
    lines = ["| measured | req/s | p50 ms | p99 ms | × ceiling | × python | peak RSS MiB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results["rows"]:
        vs_py = f"{r['vs_python']:.0f}" if r["vs_python"] else "-"
        lines.append(f"| {r['label']} | {r['rps']:,.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                     f"{r['vs_ceiling']:.2f} | {vs_py} | {r['rss_mib']:.1f} |")
    table = "\n".join(lines)
    text = (f"machine: {results['machine']}\n\nconfig: {results['config']}\n\n"
            f"start-up: {results.get('startup_ms')}\n\nflows: {results.get('flows')}\n\n{table}\n\n"
            f"limiter: {results.get('limiter')}\n\n"
            f"sign-in pressure: {json.dumps(results.get('signin_pressure'), indent=1)}\n\n"
            + providers.table(results.get("providers") or []) + "\n")
    print("\n" + table)
    record.write("load", "bench/run.py (run by bench/run.sh)", text, data=results)


if __name__ == "__main__":
    main()
