#!/usr/bin/env python3
"""The token exchange against forward-auth, same run, interleaved rounds:
a service exchanging a person's access token for the provider's (cached,
unexpired: no call to the provider) at POST /oauth/token, against
/auth/verify, at the same connections. Throughput, p99, CPU per request of
the server process (utime+stime from /proc), and the bytes a connected
account takes in the database.

    cargo build --release && npm ci --prefix tests/browser
    python3 bench/vault.py [--connections 32] [--duration 5] [--rounds 3]

Needs wrk, node and tests/browser/node_modules (the provider is the test
suite's npm oidc-provider). Writes bench/results/runs/<date>-vault-<time>.md.
"""
import argparse
import base64
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import record  # noqa: E402
import run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRONTEND = "http://localhost:5173"
SECRET = "chronos vault test secret"
SERVICE = ("calendar", "the-calendar-services-secret-of-32-chars")



def start_provider(port):
    proc = subprocess.Popen(["node", os.path.join(ROOT, "tests/browser/vault-provider.mjs")],
                            env=dict(os.environ, OP_PORT=str(port),
                                     RP_REDIRECT_URI=f"{FRONTEND}/auth/web/callback"),
                            stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "listening" in line:
            return proc
    raise RuntimeError("the provider did not start")


def sign_in(port, op):
    """Login at Chronos, consent at the provider, the callback: the cookies."""
    jar = {}

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
        return r, data

    _, data = request("GET", "/auth/google/login")
    authorize = json.loads(data)["redirectUrl"]
    conn = http.client.HTTPConnection("127.0.0.1", op, timeout=30)
    conn.request("GET", "/__test/consent?login=bench&url=" + urllib.parse.quote(authorize, safe=""))
    location = json.loads(conn.getresponse().read())["location"]
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["code"][0]
    r, _ = request("POST", "/auth/web/callback", json.dumps({"code": code}),
                   {"Content-Type": "application/json"})
    assert r.status == 200, r.status
    return jar


def measure(label, url, args, pid, lua=None, headers=()):
    argv = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    if lua:
        argv += ["-s", lua]
    for h in headers:
        argv += ["-H", h]
    subprocess.run(run.pinned(1, argv[:3] + ["-d1s"] + argv[4:] + [url]), capture_output=True, check=True)
    before = run.cpu_seconds(pid)
    out = subprocess.run(run.pinned(1, argv + [url]), capture_output=True, text=True, check=True).stdout
    cpu = run.cpu_seconds(pid) - before
    requests = int(run.WRK_RE["requests"].search(out).group(1))
    non2xx = run.WRK_RE["non2xx"].search(out)
    if non2xx:
        raise RuntimeError(f"{label}: {non2xx.group(1)} answers not 2xx")
    result = {
        "label": label,
        "rps": float(run.WRK_RE["rps"].search(out).group(1)),
        "p99_ms": run.parse_latency(out, 99),
        "cpu_us": cpu / requests * 1e6,
    }
    print(f"  {label:<10} {result['rps']:>10,.0f} req/s  p99 {result['p99_ms']:.2f} ms"
          f"  {result['cpu_us']:.1f} µs CPU/request", flush=True)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    op_port, port = run.free_port(), run.free_port()
    provider = start_provider(op_port)
    with tempfile.TemporaryDirectory() as data:
        env = run.chronos_env(
            data, port,
            IDENTITY_PROVIDER="oidc", OIDC_ISSUER=f"http://127.0.0.1:{op_port}", OIDC_CLIENT_ID="chronos",
            OIDC_CLIENT_SECRET=SECRET, OIDC_SCOPES="openid email profile offline_access calendar",
            OIDC_AUTH_PARAMS="prompt=consent", PROVIDER_TOKENS="keep",
            SERVICE_CLIENTS=f"{SERVICE[0]}:{SERVICE[1]}", RUST_LOG="warn",
        )
        server = run.Server("chronos", [run.CHRONOS], env, port)
        try:
            jar = sign_in(port, op_port)
            cookie = f"Cookie: chronos_session={jar['chronos_session']}"
            body = urllib.parse.urlencode({
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "subject_token": jar["chronos_session"],
            })
            basic = base64.b64encode(f"{SERVICE[0]}:{SERVICE[1]}".encode()).decode()
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
                lua.write('wrk.method = "POST"\n'
                          f'wrk.body = "{body}"\n'
                          'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
                          f'wrk.headers["Authorization"] = "Basic {basic}"\n')
            rounds = []
            for r in range(args.rounds):
                print(f"round {r + 1}", flush=True)
                pair = {}
                order = ["verify", "exchange"] if r % 2 == 0 else ["exchange", "verify"]
                for name in order:
                    if name == "verify":
                        pair[name] = measure("verify", f"http://127.0.0.1:{port}/auth/verify", args,
                                             server.proc.pid, headers=[cookie])
                    else:
                        pair[name] = measure("exchange", f"http://127.0.0.1:{port}/oauth/token", args,
                                             server.proc.pid, lua=lua.name)
                rounds.append(pair)
            os.unlink(lua.name)
        finally:
            server.stop()
            provider.terminate()
        db = sqlite3.connect(os.path.join(data, "chronos.db"))
        row_bytes = db.execute(
            "SELECT SUM(COALESCE(length(id),0) + COALESCE(length(user_id),0) + COALESCE(length(provider),0)"
            " + COALESCE(length(issuer),0) + COALESCE(length(subject),0) + COALESCE(length(email),0)"
            " + COALESCE(length(name),0) + COALESCE(length(scopes),0) + COALESCE(length(access_token),0)"
            " + COALESCE(length(refresh_token),0)) + 8 * 6 * COUNT(*), COUNT(*) FROM connected_accounts").fetchone()
    lines = [f"Token exchange (cached, unexpired provider token) vs /auth/verify, {args.connections} connections, "
             f"{args.duration} s runs, {args.rounds} interleaved rounds; server pinned to CPU 0, wrk to CPU 1.", "",
             "| round | verify req/s | exchange req/s | ratio | verify p99 ms | exchange p99 ms "
             "| verify µs CPU/req | exchange µs CPU/req |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, pair in enumerate(rounds, 1):
        v, e = pair["verify"], pair["exchange"]
        lines.append(f"| {i} | {v['rps']:,.0f} | {e['rps']:,.0f} | {e['rps'] / v['rps']:.2f} | {v['p99_ms']:.2f} "
                     f"| {e['p99_ms']:.2f} | {v['cpu_us']:.1f} | {e['cpu_us']:.1f} |")
    ratios = sorted(p["exchange"]["rps"] / p["verify"]["rps"] for p in rounds)
    lines += ["", f"Median ratio exchange/verify: {ratios[len(ratios) // 2]:.2f}.",
              f"A connected account takes {row_bytes[0] // max(row_bytes[1], 1)} bytes of row payload "
              f"(its columns, sealed tokens included; SQLite, {row_bytes[1]} account)."]
    text = "\n".join(lines) + "\n"
    print(text)
    record.write("vault", "bench/vault.py", text, data={"rounds": rounds})


if __name__ == "__main__":
    main()
