#!/usr/bin/env python3
"""What a passkey sign-in costs the server against a password sign-in
(argon2id), same run (issue 24): two fresh servers of the same build, one
signing people in only with passwords, one only with passkeys, each the
whole browser flow (login, sign-in page, the answer, the code exchange).
Reported per sign-in: wall time at one client, the server's CPU
(utime+stime from /proc), and the server's peak resident memory (VmHWM)
after the same number of sign-ins at `--concurrency` clients; rounds
interleave the two.

    cargo build --release
    python3 bench/passkeys.py [--signins 60] [--rounds 4] [--concurrency 4]

The passkey is made and used by a software authenticator written here on
the `cryptography` package (ES256, "none" attestation, a user-verified
assertion with a rising sign counter), speaking WebAuthn's wire format as a
browser would send it. Servers pinned to CPU 0, clients on the other CPU.
Writes bench/results/runs/<date>-passkeys-<time>.md.
"""
import argparse
import base64
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import record  # noqa: E402
import run  # noqa: E402


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cbor(value):
    """The CBOR subset WebAuthn needs: ints, bytes, text, maps."""
    def head(major, n):
        if n < 24:
            return bytes([major << 5 | n])
        for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if n < 1 << (8 * size):
                return bytes([major << 5 | extra]) + n.to_bytes(size, "big")
        raise ValueError(n)
    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, bytes):
        return head(2, len(value)) + value
    if isinstance(value, str):
        return head(3, len(value.encode())) + value.encode()
    if isinstance(value, dict):
        return head(5, len(value)) + b"".join(cbor(k) + cbor(v) for k, v in value.items())
    raise TypeError(value)


class Authenticator:
    """One platform passkey: ES256, user present and verified."""

    def __init__(self, origin, rp_id):
        self.origin, self.rp_hash = origin, hashlib.sha256(rp_id.encode()).digest()
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.id = os.urandom(32)
        self.counter = 0
        self.handle = None
        self.lock = threading.Lock()

    def client_data(self, kind, challenge):
        return json.dumps({"type": kind, "challenge": challenge, "origin": self.origin,
                           "crossOrigin": False}).encode()

    def create(self, options):
        pk = options["publicKey"]
        self.handle = pk["user"]["id"]
        numbers = self.key.public_key().public_numbers()
        cose = cbor({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})
        auth = self.rp_hash + bytes([0x45]) + (0).to_bytes(4, "big") + bytes(16) + \
            len(self.id).to_bytes(2, "big") + self.id + cose
        attestation = cbor({"fmt": "none", "attStmt": {}, "authData": auth})
        return {"id": b64(self.id), "rawId": b64(self.id), "type": "public-key",
                "response": {"clientDataJSON": b64(self.client_data("webauthn.create", pk["challenge"])),
                             "attestationObject": b64(attestation), "transports": ["internal"]},
                "clientExtensionResults": {}, "authenticatorAttachment": "platform"}

    def get(self, options):
        with self.lock:
            self.counter += 1
            counter = self.counter
        data = self.client_data("webauthn.get", options["publicKey"]["challenge"])
        auth = self.rp_hash + bytes([0x05]) + counter.to_bytes(4, "big")
        signature = self.key.sign(auth + hashlib.sha256(data).digest(), ec.ECDSA(hashes.SHA256()))
        return {"id": b64(self.id), "rawId": b64(self.id), "type": "public-key",
                "response": {"clientDataJSON": b64(data), "authenticatorData": b64(auth),
                             "signature": b64(signature), "userHandle": self.handle},
                "clientExtensionResults": {}, "authenticatorAttachment": "platform"}


def flow_of(port, jar):
    """GET /auth/google/login and the sign-in page: the flow's hidden fields."""
    _, data = run.http_request(port, jar, "GET", "/auth/google/login")
    url = urllib.parse.urlsplit(json.loads(data)["redirectUrl"])
    _, html = run.http_request(port, jar, "GET", f"{url.path}?{url.query}")
    form = html.decode().split('id="signin"', 1)[1].split("</form>", 1)[0]
    import re
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
    return {k: v.replace("&amp;", "&") for k, v in fields.items()}


def post_json(port, jar, path, body):
    r, data = run.http_request(port, jar, "POST", path, json.dumps(body),
                               {"Content-Type": "application/json"})
    return r.status, json.loads(data or b"{}")


def exchange(port, jar, redirect):
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(redirect).query)["code"][0]
    status, _ = post_json(port, jar, "/auth/web/callback", {"code": code})
    assert status == 200, status


def passkey_sign_in(port, authenticator):
    jar = {}
    fields = flow_of(port, jar)
    flow = {k: fields[k] for k in ("redirect_uri", "code_challenge", "code_challenge_method")}
    status, begun = post_json(port, jar, "/auth/signin/passkey/options", {**flow, "conditional": False})
    assert status == 200, begun
    status, done = post_json(port, jar, "/auth/signin/passkey",
                             {**flow, "ceremonyId": begun["ceremonyId"],
                              "credential": authenticator.get(begun["options"])})
    assert status == 200, done
    exchange(port, jar, done["redirectUrl"])


def password_sign_in(port, _):
    run.sign_in(port, {})


def passkey_account(port, origin):
    """A passkey-only account made through the sign-up page's calls."""
    authenticator = Authenticator(origin, "localhost")
    jar = {}
    fields = flow_of(port, jar)
    flow = {k: fields[k] for k in ("redirect_uri", "code_challenge", "code_challenge_method")}
    status, begun = post_json(port, jar, "/auth/signup/passkey/options", {**flow, "email": "key@example.com"})
    assert status == 200, begun
    status, done = post_json(port, jar, "/auth/signup/passkey",
                             {**flow, "ceremonyId": begun["ceremonyId"],
                              "credential": authenticator.create(begun["options"])})
    assert status == 200, done
    return authenticator


def batch(server, sign_in, authenticator, n, concurrency):
    """n sign-ins at `concurrency` clients: (wall s, server CPU s)."""
    pid = server.proc.pid
    cpu0, t0 = run.cpu_seconds(pid), time.perf_counter()
    left = [n]
    lock = threading.Lock()

    def client():
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            sign_in(server.port, authenticator)
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, run.cpu_seconds(pid) - cpu0


def latency_ms(server, sign_in, authenticator, n):
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        sign_in(server.port, authenticator)
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--signins", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    os.sched_setaffinity(0, {1})
    servers, authenticators = {}, {}
    try:
        for kind in ("password", "passkey"):
            d = tempfile.mkdtemp()
            run.add_user(d)
            port = run.free_port()
            origin = f"http://localhost:{port}"
            extra = {"PUBLIC_URL": origin} if kind == "passkey" else {}
            servers[kind] = run.Server(kind, [run.CHRONOS], run.chronos_env(d, port, **extra), port)
            authenticators[kind] = passkey_account(port, origin) if kind == "passkey" else None
        sign_ins = {"password": password_sign_in, "passkey": passkey_sign_in}
        for kind in servers:  # warm-up
            batch(servers[kind], sign_ins[kind], authenticators[kind], 5, 1)
        rows = {k: {"cpu_ms": [], "wall_ms": [], "latency_ms": []} for k in servers}
        for r in range(args.rounds):
            for kind in (("password", "passkey") if r % 2 == 0 else ("passkey", "password")):
                wall, cpu = batch(servers[kind], sign_ins[kind], authenticators[kind], args.signins, args.concurrency)
                rows[kind]["cpu_ms"].append(cpu / args.signins * 1000)
                rows[kind]["wall_ms"].append(wall / args.signins * 1000)
                rows[kind]["latency_ms"].append(latency_ms(servers[kind], sign_ins[kind], authenticators[kind], 10))
                print(f"  round {r + 1} {kind:<8} {rows[kind]['cpu_ms'][-1]:8.3f} ms CPU/sign-in  "
                      f"{rows[kind]['latency_ms'][-1]:7.2f} ms at 1 client", flush=True)
        peak = {k: servers[k].rss() for k in servers}
    finally:
        for s in servers.values():
            s.stop()
    med = {k: {m: statistics.median(v) for m, v in rows[k].items()} for k in rows}
    lines = [
        f"{args.rounds} interleaved rounds of {args.signins} whole sign-ins at {args.concurrency} clients "
        f"(login, page, answer, code exchange), each method on its own fresh server of the same build; "
        f"medians of the rounds. Servers on CPU 0, clients on CPU 1.",
        "",
        "| sign-in | server CPU per sign-in (ms) | wall per sign-in at 1 client (ms) | peak RSS after the run (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for k in ("password", "passkey"):
        lines.append(f"| {k} | {med[k]['cpu_ms']:.3f} | {med[k]['latency_ms']:.2f} | {peak[k]:.1f} |")
    ratio_cpu = med["passkey"]["cpu_ms"] / med["password"]["cpu_ms"]
    ratio_lat = med["passkey"]["latency_ms"] / med["password"]["latency_ms"]
    lines += ["", f"- passkey/password server CPU per sign-in: {ratio_cpu:.3f}x",
              f"- passkey/password wall time at one client: {ratio_lat:.3f}x",
              f"- peak RSS: password {peak['password']:.1f} MiB, passkey {peak['passkey']:.1f} MiB",
              "", "Per round (CPU ms per sign-in):", ""]
    for k in ("password", "passkey"):
        lines.append(f"- {k}: " + ", ".join(f"{x:.3f}" for x in rows[k]["cpu_ms"]))
    text = "\n".join(lines)
    print(text)
    record.write("passkeys", "bench/passkeys.py", text, data={"rounds": rows, "peak_rss_mib": peak, "args": vars(args)})


if __name__ == "__main__":
    main()
