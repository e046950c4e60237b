"""Chronos with each identity provider, same run: sign-in latency through
the provider (loopback) and the session-check throughput, against the
embedded provider. The providers are the ones the tests use: the npm
oidc-provider (a certified OpenID provider) and the GoTrue test server
(Supabase Auth's wire contract), both from tests/browser (npm ci there).

Used by bench/run.py; `python3 bench/providers.py` runs it alone (quick) and
writes its own run file (bench/results/runs/<date>-providers-<time>.md).
"""
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

NODE_DIR = os.path.join(run.ROOT, "tests", "browser")
OP_SECRET = "chronos provider bench secret"
APIKEY = "sb_publishable_bench"


class Jar:
    """Cookies per host, enough for these flows."""

    def __init__(self):
        self.cookies = {}

    def request(self, url, method="GET", body=None, headers=None):
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        h = dict(headers or {})
        jar = self.cookies.setdefault(parts.netloc, {})
        if jar:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        path = parts.path + ("?" + parts.query if parts.query else "")
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


def node(script, env, ready="listening"):
    proc = subprocess.Popen(["node", os.path.join(NODE_DIR, script)], env=dict(os.environ, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if ready in line:
            return proc
    proc.kill()
    raise RuntimeError(f"{script} did not start")


def oidc_sign_in(api_port, jar):
    """Login → the provider's interactions (login, consent) → callback."""
    api = f"http://127.0.0.1:{api_port}"
    _, data = jar.request(api + "/auth/google/login")
    url = json.loads(data)["redirectUrl"]
    for _ in range(10):
        r, data = jar.request(url)
        location = r.getheader("Location")
        if r.status in (302, 303) and location:
            target = urllib.parse.urljoin(url, location)
            if "/auth/web/callback" in target:
                code = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)["code"][0]
                break
            url = target
            continue
        page = data.decode()
        action = urllib.parse.urljoin(url, re.search(r'action="([^"]+)"', page).group(1))
        prompt = re.search(r'name="prompt" value="([^"]+)"', page).group(1)
        fields = {"prompt": prompt}
        if prompt == "login":
            fields.update(login="bench", password="x")
        r, _ = jar.request(action, "POST", urllib.parse.urlencode(fields),
                           {"Content-Type": "application/x-www-form-urlencoded"})
        url = urllib.parse.urljoin(action, r.getheader("Location"))
    started = time.perf_counter()
    r, data = jar.request(api + "/auth/web/callback", "POST", json.dumps({"code": code}),
                          {"Content-Type": "application/json"})
    assert r.status == 200, data
    return (time.perf_counter() - started) * 1000


def supabase_sign_in(api_port, jar):
    """Login → Supabase's /authorize → "Google" consent → callback."""
    api = f"http://127.0.0.1:{api_port}"
    _, data = jar.request(api + "/auth/google/login")
    url = json.loads(data)["redirectUrl"]
    r, _ = jar.request(url)
    consent = urllib.parse.urljoin(url, r.getheader("Location"))
    flow = urllib.parse.parse_qs(urllib.parse.urlsplit(consent).query)["flow"][0]
    r, _ = jar.request(urllib.parse.urljoin(url, "/__google/consent"), "POST",
                       urllib.parse.urlencode({"flow": flow, "login": "bench"}),
                       {"Content-Type": "application/x-www-form-urlencoded"})
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(r.getheader("Location")).query)["code"][0]
    started = time.perf_counter()
    r, data = jar.request(api + "/auth/web/callback", "POST", json.dumps({"code": code}),
                          {"Content-Type": "application/json"})
    assert r.status == 200, data
    return (time.perf_counter() - started) * 1000


def measure(args, work):
    """Rows for embedded, oidc and supabase: callback latency and the
    session/verify throughput with a signed-in cookie."""
    rows = []
    op_port, gt_port = run.free_port(), run.free_port()
    processes = []
    try:
        modes = []
        # Embedded (the password page), the reference.
        modes.append(("embedded", {}, None))
        api_ports = {name: run.free_port() for name in ("embedded", "oidc", "supabase")}
        processes.append(node("oidc-provider.mjs", {
            "OP_PORT": str(op_port),
            "RP_REDIRECT_URI": "http://localhost:5173/auth/web/callback",
            "RP_LOGOUT_URI": "http://localhost:5173/",
            "RP_BACKCHANNEL": f"http://127.0.0.1:{api_ports['oidc']}/auth/backchannel-logout",
        }))
        modes.append(("oidc", {
            "IDENTITY_PROVIDER": "oidc", "OIDC_ISSUER": f"http://127.0.0.1:{op_port}",
            "OIDC_CLIENT_ID": "chronos", "OIDC_CLIENT_SECRET": "chronos provider test secret",
            "OIDC_SCOPES": "openid email profile offline_access", "OIDC_AUTH_PARAMS": "prompt=consent",
        }, oidc_sign_in))
        processes.append(node("gotrue-double.mjs", {
            "PORT": str(gt_port), "APIKEY": APIKEY,
            "STATE_FILE": os.path.join(work, "gotrue.json"),
        }))
        modes.append(("supabase", {
            "IDENTITY_PROVIDER": "supabase", "SUPABASE_URL": f"http://127.0.0.1:{gt_port}",
            "SUPABASE_PUBLISHABLE_KEY": APIKEY,
        }, supabase_sign_in))
        for name, env, flow in modes:
            data_dir = os.path.join(work, name)
            port = api_ports[name]
            if name == "embedded":
                run.add_user(data_dir)
            srv = run.Server(name, [run.CHRONOS], run.chronos_env(data_dir, port, **env), port)
            jar = Jar()
            if flow is None:
                latencies = []
                for _ in range(10):
                    started = time.perf_counter()
                    run.sign_in(port)
                    latencies.append((time.perf_counter() - started) * 1000)
                cookie = run.sign_in(port)
                note = "whole flow (page, argon2id, callback)"
            else:
                latencies = [flow(port, Jar()) for _ in range(10)]
                flow(port, jar)
                session = jar.cookies[f"127.0.0.1:{port}"]["chronos_session"]
                cookie = f"chronos_session={session}"
                note = "callback: code exchange at the provider + token checks"
            signin_ms = statistics.median(latencies)
            print(f"  {name}: sign-in {signin_ms:.1f} ms median ({note})", flush=True)
            for path in ("/auth/session", "/auth/verify"):
                row = run.measure(f"{name}: GET {path}", f"http://127.0.0.1:{port}{path}", args, "GET",
                                  (f"Cookie: {cookie}",))
                rows.append(dict(row, server=name, signin_ms=signin_ms, rss_mib=srv.rss()))
            srv.stop()
    finally:
        for p in processes:
            p.kill()
    base = {r["label"].split(": ", 1)[1]: r["rps"] for r in rows if r["server"] == "embedded"}
    for r in rows:
        r["vs_embedded"] = r["rps"] / base[r["label"].split(": ", 1)[1]]
    return rows


def table(rows):
    lines = ["| provider: measured | req/s | p99 ms | × embedded | sign-in ms (median) |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['rps']:,.0f} | {r['p99_ms']:.3f} | {r['vs_embedded']:.2f} "
                     f"| {r['signin_ms']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse
    import record
    a = argparse.Namespace(connections=32, duration=3, runs=1)
    with tempfile.TemporaryDirectory() as work:
        rows = measure(a, work)
    for r in rows:
        print(f"{r['label']}: {r['rps']:,.0f} req/s ({r['vs_embedded']:.2f}x embedded), sign-in {r['signin_ms']:.1f} ms")
    text = f"machine: {run.machine()}\n\nconfig: {vars(a)}\n\n{table(rows)}\n"
    record.write("providers", "bench/providers.py", text, data={"config": vars(a), "rows": rows})
