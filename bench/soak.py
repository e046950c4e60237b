#!/usr/bin/env python3
"""Soak: ten minutes of mixed traffic against the release build, then the
verdict. Not in CI (bench/soak.sh builds and runs it).

Workers (threads, keep-alive connections, each "person" from an address of
its own through X-Forwarded-For, TRUSTED_PROXIES=127.0.0.1/32):
- people: sign in, check the session and /auth/verify, refresh (sometimes a
  stolen token is replayed afterwards: reuse, the family ends), log out
  locally or globally;
- a crowd from one address, beyond RATE_LIMIT_AUTH: 429s;
- bad input: garbage cookies and tokens, malformed JSON, oversized bodies
  and heads, bad Host, unknown paths and methods.
Every answer is checked against what that step expects. Memory (RSS) and
the server's own figures (revoked set, limiter keys, from /metrics) are
sampled every 10 s, RSS also every second. Pass: zero 5xx, zero protocol
errors (a dropped connection, a malformed answer), zero unexpected
statuses, RSS after the warm-up flat (per-minute medians within 10% of
their median), revoked set and limiter keys bounded.
Results: a new run file, bench/results/runs/<date>-soak-<time>.{md,json}
(bench/record.py; bench/results/LATEST points at it).
"""
import argparse
import http.client
import json
import os
import random
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import record  # noqa: E402
import run  # noqa: E402
import scale  # noqa: E402

EMAILS = [f"soak{i}@example.com" for i in range(20)]


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.statuses = {}
        self.unexpected = []
        self.protocol_errors = []
        self.requests = 0

    def record(self, step, status, expected):
        with self.lock:
            self.requests += 1
            key = f"{step} {status}"
            self.statuses[key] = self.statuses.get(key, 0) + 1
            if status not in expected and len(self.unexpected) < 50:
                self.unexpected.append(f"{step}: {status} (expected {sorted(expected)})")
            if status not in expected:
                self.statuses["UNEXPECTED"] = self.statuses.get("UNEXPECTED", 0) + 1

    def error(self, step, exc):
        with self.lock:
            self.requests += 1
            self.statuses["PROTOCOL_ERROR"] = self.statuses.get("PROTOCOL_ERROR", 0) + 1
            if len(self.protocol_errors) < 50:
                self.protocol_errors.append(f"{step}: {exc!r}")


class Client:
    """One keep-alive connection and a cookie jar, from one address."""

    def __init__(self, port, tally, ip):
        self.port, self.tally, self.ip = port, tally, ip
        self.jar = {}
        self.conn = None

    def request(self, step, method, path, expected, body=None, headers=None, keep_cookies=True):
        h = {"X-Forwarded-For": self.ip}
        if self.jar:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        h.update(headers or {})
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.conn.request(method, path, body=body, headers=h)
            r = self.conn.getresponse()
            data = r.read()
            if r.getheader("Connection", "").lower() == "close":
                self.close()
        except Exception as exc:  # noqa: BLE001 — every failure is a finding
            self.close()
            self.tally.error(step, exc)
            return None, b""
        if keep_cookies:
            for line in r.headers.get_all("Set-Cookie") or []:
                name, value = line.split(";", 1)[0].split("=", 1)
                if value:
                    self.jar[name] = value
                else:
                    self.jar.pop(name, None)
        self.tally.record(step, r.status, expected)
        return r, data

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def csrf(self):
        return {"X-CSRF-Token": self.jar.get("chronos_csrf", "")}


def sign_in(c, email):
    r, data = c.request("login", "GET", "/auth/google/login", {200})
    if r is None or r.status != 200:
        return False
    page = urllib.parse.urlsplit(json.loads(data)["redirectUrl"])
    r, html = c.request("signin page", "GET", f"{page.path}?{page.query}", {200})
    if r is None:
        return False
    form = html.decode().split('id="signin"', 1)[1].split("</form>", 1)[0]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
    fields = {k: v.replace("&amp;", "&").replace("&quot;", '"').replace("&#x27;", "'")
              for k, v in fields.items()}
    fields.update(email=email, password=run.PASSWORD)
    r, _ = c.request("signin", "POST", "/auth/signin", {303}, urllib.parse.urlencode(fields),
                     {"Content-Type": "application/x-www-form-urlencoded",
                      "Origin": f"http://127.0.0.1:{c.port}"})
    if r is None or r.status != 303:
        return False
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(r.getheader("Location")).query)["code"][0]
    r, _ = c.request("callback", "POST", "/auth/web/callback", {200}, json.dumps({"code": code}),
                     {"Content-Type": "application/json"})
    return r is not None and r.status == 200


def person(port, tally, stop, seed):
    rnd = random.Random(seed)
    # An account of its own: a global logout ends only this worker's sessions.
    email = EMAILS[seed % len(EMAILS)]
    while not stop.is_set():
        ip = f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        c = Client(port, tally, ip)
        if not sign_in(c, email):
            c.close()
            continue
        for _ in range(rnd.randrange(5, 30)):
            c.request("session", "GET", "/auth/session", {200})
            c.request("verify", "GET", "/auth/verify", {200})
        stolen = dict(c.jar)
        for _ in range(rnd.randrange(1, 5)):
            c.request("refresh", "POST", "/auth/refresh", {200}, headers=c.csrf())
        if rnd.random() < 0.2:
            # The stolen (rotated) token replayed after the interval: the
            # whole family ends; the owner's next refresh is refused too.
            thief = Client(port, tally, ip)
            thief.jar = stolen
            time.sleep(0.05)
            thief.request("reuse", "POST", "/auth/refresh", {401}, headers=thief.csrf())
            thief.close()
            c.request("after reuse", "POST", "/auth/refresh", {401}, headers=c.csrf())
            c.close()
            continue
        scope = "global" if rnd.random() < 0.2 else "local"
        copy = dict(c.jar)
        c.request(f"logout {scope}", "POST", f"/auth/logout?scope={scope}", {200}, headers=c.csrf())
        # The copied cookies are refused after the logout.
        other = Client(port, tally, ip)
        other.jar = copy
        other.request("after logout", "GET", "/auth/session", {401})
        other.close()
        c.close()


def crowd(port, tally, stop):
    c = Client(port, tally, "203.0.113.9")
    while not stop.is_set():
        c.request("crowd", "GET", "/auth/csrf", {200, 429})
        c.request("crowd logout", "POST", "/auth/logout", {200, 429})


def bad_input(port, tally, stop, seed):
    rnd = random.Random(seed)
    c = Client(port, tally, "198.51.100.7")
    # Each from an address of its own (so the answers are the input's, not
    # the rate limit's; the limiter's keys must stay bounded regardless).
    steps = [
        ("garbage session", "GET", "/auth/session", {401}, None,
         {"Cookie": "chronos_session=" + "x" * rnd.randrange(1, 900)}),
        ("forged token", "GET", "/auth/verify", {401}, None,
         {"Cookie": "chronos_session=eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}),
        ("bad json", "POST", "/auth/web/callback", {422, 400}, "{not json",
         {"Content-Type": "application/json"}),
        ("wrong code", "POST", "/auth/web/callback", {400}, '{"code": "nope"}',
         {"Content-Type": "application/json"}),
        ("big body", "POST", "/auth/logout", {413}, "x" * 70_000, {}),
        ("bad redirect", "GET", "/auth/google/login?redirectTo=https://evil.example/", {400}, None, {}),
        ("unknown path", "GET", "/nope/" + str(rnd.random()), {404}, None, {}),
        ("wrong method", "PUT", "/auth/session", {405}, None, {}),
        ("foreign origin", "POST", "/auth/logout", {403}, None, {"Origin": "https://evil.example"}),
        ("refresh garbage", "POST", "/auth/refresh", {401, 403}, None,
         {"Cookie": "chronos_refresh=AAAA; chronos_csrf=x", "X-CSRF-Token": "x"}),
    ]
    while not stop.is_set():
        step, method, path, expected, body, headers = rnd.choice(steps)
        c.ip = f"172.{rnd.randrange(16, 32)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        c.request(step, method, path, expected, body, headers, keep_cookies=False)
        c.jar.clear()
        if rnd.random() < 0.02:
            raw_oversized_head(port, tally)
        time.sleep(0.002)


def raw_oversized_head(port, tally):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /auth/session HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
            data = s.recv(200)
        status = int(data.split(b" ", 2)[1])
        tally.record("oversized head", status, {431})
    except Exception as exc:  # noqa: BLE001
        tally.error("oversized head", exc)


def scrape(metrics_port):
    conn = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--people", type=int, default=4)
    ap.add_argument("--warmup", type=float, default=2, help="minutes before RSS must be flat")
    args = ap.parse_args()

    work = tempfile.mkdtemp()
    port, metrics_port = run.free_port(), run.free_port()
    for email in EMAILS:
        run.add_user(work, email)
    env = run.chronos_env(work, port, RATE_LIMIT_AUTH="120/minute", TRUSTED_PROXIES="127.0.0.1/32",
                          METRICS_BIND=f"127.0.0.1:{metrics_port}", ACCESS_TOKEN_TTL_SECONDS="60",
                          REFRESH_REUSE_INTERVAL_SECONDS="0", RUST_LOG="info")
    srv = run.Server("chronos", [run.CHRONOS], env, port)
    tally, stop = Tally(), threading.Event()
    threads = [threading.Thread(target=person, args=(port, tally, stop, i)) for i in range(args.people)]
    threads += [threading.Thread(target=crowd, args=(port, tally, stop)),
                threading.Thread(target=bad_input, args=(port, tally, stop, 99))]
    for t in threads:
        t.start()
    samples, started = [], time.monotonic()
    # RSS every second: a sign-in's password hash holds ~19 MiB while it
    # runs, so single readings swing with the hashes in flight; flatness is
    # judged on per-minute medians.
    rss_seconds = []

    def sample_rss():
        while not stop.wait(1.0):
            rss_seconds.append((time.monotonic() - started, scale.rss_mib(srv.proc.pid)))

    sampler = threading.Thread(target=sample_rss)
    sampler.start()
    try:
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(10)
            m = scrape(metrics_port)
            sample = {
                "t_s": round(time.monotonic() - started),
                "rss_mib": round(scale.rss_mib(srv.proc.pid), 1),
                "requests": tally.requests,
                "revoked": m.get("chronos_revoked_sessions", 0),
                "limiter_keys": m.get('chronos_rate_limit_keys{limit="auth"}', 0),
                "logouts": sum(v for k, v in m.items() if k.startswith("chronos_logouts_total")),
                "reuse": m.get("chronos_refresh_reuse_detected_total", 0),
                "rate_limited": m.get('chronos_rate_limited_total{limit="auth"}', 0),
                "log_dropped": m.get("chronos_log_lines_dropped_total", 0),
            }
            samples.append(sample)
            print(json.dumps(sample), flush=True)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        sampler.join(5)
        final = scrape(metrics_port)
        srv.stop()
    verdict(args, tally, samples, final, rss_seconds)


def verdict(args, tally, samples, final, rss_seconds):
    minutes = {}
    for t, rss in rss_seconds:
        if t >= args.warmup * 60:
            minutes.setdefault(int(t // 60), []).append(rss)
    minute_medians = [round(statistics.median(v), 1) for _, v in sorted(minutes.items()) if len(v) >= 30]
    if not minute_medians:
        minute_medians = [round(statistics.median(r for _, r in rss_seconds), 1)]
    median = statistics.median(minute_medians)
    spread = max(abs(r - median) / median for r in minute_medians)
    fivexx = sum(n for k, n in tally.statuses.items() if k.split()[-1].startswith("5"))
    late = samples[len(samples) // 2:]
    # What the server counted against what the clients saw.
    saw = {
        "logouts": sum(n for k, n in tally.statuses.items()
                       if k.startswith(("logout ", "crowd logout")) and k.endswith(" 200")),
        "429s": sum(n for k, n in tally.statuses.items() if k.endswith(" 429")),
        "reuse": tally.statuses.get("reuse 401", 0),
    }
    counted = {
        "logouts": sum(v for k, v in final.items() if k.startswith("chronos_logouts_total")),
        "429s": sum(v for k, v in final.items() if k.startswith("chronos_rate_limited_total")),
        "reuse": final.get("chronos_refresh_reuse_detected_total", 0),
    }
    checks = {
        "zero 5xx": fivexx == 0,
        "zero protocol errors": tally.statuses.get("PROTOCOL_ERROR", 0) == 0,
        "zero unexpected statuses": tally.statuses.get("UNEXPECTED", 0) == 0,
        "RSS after warm-up (per-minute medians) within 10% of their median": spread <= 0.10,
        "revoked set bounded (second half no higher than 1.5x the first half's peak)":
            max(s["revoked"] for s in late) <= 1.5 * max(1, max(s["revoked"] for s in samples[:len(samples) // 2] or [0])),
        f"metrics equal what clients saw (logouts, 429s, reuse: {saw})": saw == counted,
        "limiter keys bounded": max(s["limiter_keys"] for s in late) <= 1.5 * max(1, max(s["limiter_keys"] for s in samples[:len(samples) // 2] or [0])),
    }
    raw = [r for t, r in rss_seconds if t >= args.warmup * 60] or [0]
    result = {"config": vars(args), "requests": tally.requests, "statuses": tally.statuses,
              "rss_minute_medians_mib": minute_medians, "rss_raw_min_max_mib": [min(raw), max(raw)],
              "unexpected": tally.unexpected, "protocol_errors": tally.protocol_errors,
              "rss_median_mib": median, "rss_spread": spread, "samples": samples,
              "final_metrics": {k: v for k, v in final.items() if k.startswith("chronos_")},
              "checks": checks, "passed": all(checks.values())}
    lines = [f"# Soak: {args.minutes:g} minutes of mixed traffic\n",
             f"{tally.requests:,} requests; RSS after the {args.warmup:g}-minute warm-up, per-minute "
             f"medians: {', '.join(f'{m:.1f}' for m in minute_medians)} MiB (largest deviation from "
             f"their median {spread * 100:.1f}%; single readings {min(raw):.1f}-{max(raw):.1f} MiB, "
             "swinging with the password hashes in flight).\n",
             "| check | result |", "|---|---|"]
    lines += [f"| {k} | {'pass' if v else 'FAIL'} |" for k, v in checks.items()]
    lines += ["", "| step, status | count |", "|---|---:|"]
    lines += [f"| {k} | {n:,} |" for k, n in sorted(tally.statuses.items())]
    lines += ["", "| t s | RSS MiB | requests | revoked | limiter keys | logouts | reuse | 429s | log lines dropped |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {s['t_s']} | {s['rss_mib']} | {s['requests']:,} | {s['revoked']:.0f} | {s['limiter_keys']:.0f} | "
              f"{s['logouts']:.0f} | {s['reuse']:.0f} | {s['rate_limited']:.0f} | {s['log_dropped']:.0f} |"
              for s in samples]
    if tally.unexpected or tally.protocol_errors:
        lines += ["", "First unexpected answers:", ""] + [f"- {u}" for u in tally.unexpected + tally.protocol_errors]
    print("\n".join(lines))
    record.write("soak", "bench/soak.py (run by bench/soak.sh)", "\n".join(lines) + "\n", data=result)
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
