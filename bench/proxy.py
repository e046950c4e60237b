#!/usr/bin/env python3
"""The BFF proxy against what a team would otherwise run, same run,
interleaved rounds: a small JSON GET from one upstream (bench/upstream.rs,
bare hyper) (1) directly, (2) through Debian's nginx with `auth_request` to
Chronos's /auth/verify, (3) through the Chronos proxy (PROXY_ROUTES).
Throughput, p99, and what a busy machine cannot fake: CPU per request and
context switches per request, summed over every server-side process
(upstream, Chronos, nginx; every thread, from /proc). Then the time to
the first streamed event, direct against through Chronos, and Chronos's
memory while 1,000 streams stay open.

    cargo build --release --examples && cargo build --release
    python3 bench/proxy.py [--connections 32] [--duration 5] [--rounds 3] [--work-us 0 100]

`--work-us`: the CPU the upstream spends per answer, one set of rounds
each (0: a bare hyper server, where the front end's own cost is all there
is; 100: a small real API's handler).

Server-side processes are pinned to CPU 0, wrk to CPU 1. Both front ends
write an access log (nginx to a file, buffered; Chronos its batched
stdout). Needs wrk and nginx. Writes bench/results/runs/<date>-proxy-<time>.md.
"""
import argparse
import asyncio
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import record  # noqa: E402
import run  # noqa: E402

UPSTREAM = os.path.join(run.RELEASE, "examples", "upstream")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SMALL = "/calendar/calendars"





def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def start_nginx(directory, port, chronos_port, upstream_port):
    d = directory
    config = f"""daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
 access_log {d}/access.log combined buffer=64k flush=1s;
 client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
 fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
 upstream app {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
 upstream chronos {{ server 127.0.0.1:{chronos_port}; keepalive 64; }}
 server {{
  listen 127.0.0.1:{port};
  location /calendar/ {{
   auth_request /_verify;
   proxy_pass http://app;
   proxy_http_version 1.1;
   proxy_set_header Connection "";
  }}
  location = /_verify {{
   internal;
   proxy_pass http://chronos/auth/verify;
   proxy_http_version 1.1;
   proxy_set_header Connection "";
   proxy_pass_request_body off;
   proxy_set_header Content-Length "";
  }}
 }}
}}
"""
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(config)
    proc = subprocess.Popen(run.pinned(0, [NGINX, "-e", f"{d}/error.log", "-p", d, "-c", path]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("nginx did not start")


def measure(label, url, args, pids, headers=()):
    argv = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    for h in headers:
        argv += ["-H", h]
    subprocess.run(run.pinned(1, argv[:3] + ["-d1s"] + argv[4:] + [url]), capture_output=True, check=True)
    cpu0 = sum(run.cpu_seconds(p) for p in pids)
    cs0 = sum(sum(run.switches(p)) for p in pids)
    out = subprocess.run(run.pinned(1, argv + [url]), capture_output=True, text=True, check=True).stdout
    cpu = sum(run.cpu_seconds(p) for p in pids) - cpu0
    cs = sum(sum(run.switches(p)) for p in pids) - cs0
    requests = int(run.WRK_RE["requests"].search(out).group(1))
    non2xx = run.WRK_RE["non2xx"].search(out)
    if non2xx:
        raise RuntimeError(f"{label}: {non2xx.group(1)} answers not 2xx")
    result = {
        "label": label,
        "rps": float(run.WRK_RE["rps"].search(out).group(1)),
        "p99_ms": run.parse_latency(out, 99),
        "cpu_us": cpu / requests * 1e6,
        "switches": cs / requests,
    }
    print(f"  {label:<8} {result['rps']:>10,.0f} req/s  p99 {result['p99_ms']:.2f} ms"
          f"  {result['cpu_us']:.1f} µs CPU/req  {result['switches']:.2f} switches/req", flush=True)
    return result


def first_event_ms(port, path, cookie):
    """A fresh connection's request sent to the first event read (ms)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if cookie:
            request += f"Cookie: {cookie}\r\n"
        started = time.perf_counter()
        s.sendall((request + "\r\n").encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("the stream ended")
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and b"\n\n" in body:
                took = (time.perf_counter() - started) * 1000
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(head.decode(errors="replace"))
                return took


def first_events(args, chronos_port, upstream_port, cookie):
    path = "/calendar/sync?first_ms=50"
    samples = {"direct": [], "chronos": []}
    for i in range(args.stream_samples):
        order = [("direct", upstream_port, None), ("chronos", chronos_port, cookie)]
        if i % 2:
            order.reverse()
        for name, port, c in order:
            samples[name].append(first_event_ms(port, path, c))
    return {name: {"median_ms": statistics.median(v), "p90_ms": sorted(v)[int(len(v) * 0.9)]}
            for name, v in samples.items()}


async def open_streams(port, cookie, n, hold, pid):
    """`n` streams through Chronos, each read as it flows; Chronos's RSS
    before, once all are open, and every second while they stay open."""
    readers = []
    received = [0]

    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((f"GET /calendar/sync?first_ms=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Cookie: {cookie}\r\n\r\n").encode())
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        await reader.readuntil(b"\n\n")
        return reader, writer

    async def drain(reader):
        while True:
            data = await reader.read(65536)
            if not data:
                return
            received[0] += data.count(b"\n\n")

    before = run.rss_mib(pid)
    for batch in range(0, n, 100):
        readers += await asyncio.gather(*(one() for _ in range(min(100, n - batch))))
    tasks = [asyncio.create_task(drain(r)) for r, _ in readers]
    opened = run.rss_mib(pid)
    samples = []
    events_before = received[0]
    for _ in range(hold):
        await asyncio.sleep(1)
        samples.append(run.rss_mib(pid))
    events = received[0] - events_before
    for _, w in readers:
        w.close()
    for t in tasks:
        t.cancel()
    await asyncio.sleep(1)
    return {"streams": n, "rss_before_mib": before, "rss_open_mib": opened,
            "rss_min_mib": min(samples), "rss_max_mib": max(samples),
            "rss_after_close_mib": run.rss_mib(pid), "events_during_hold": events, "hold_s": hold}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stream-samples", type=int, default=40)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--hold", type=int, default=10)
    ap.add_argument("--work-us", type=int, nargs="+", default=[0, 100],
                    help="CPU the upstream spends per answer: 0 is the bare server (the proxy's worst case)")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    up_port, ch_port, ng_port = run.free_port(), run.free_port(), run.free_port()
    upstream = subprocess.Popen(run.pinned(0, [UPSTREAM, f"127.0.0.1:{up_port}"]), stdout=subprocess.DEVNULL)
    run.wait_http(up_port, SMALL)
    with tempfile.TemporaryDirectory() as data, tempfile.TemporaryDirectory() as ngdir:
        run.add_user(data)
        env = run.chronos_env(data, ch_port, PROXY_ROUTES=f"/calendar=http://127.0.0.1:{up_port}/calendar")
        chronos = run.Server("chronos", [run.CHRONOS], env, ch_port)
        nginx = start_nginx(ngdir, ng_port, ch_port, up_port)
        try:
            cookie = run.sign_in(ch_port)
            header = f"Cookie: {cookie}"
            server_side = [upstream.pid, chronos.proc.pid, nginx.pid] + children(nginx.pid)
            rounds = {}
            for work in args.work_us:
                path = SMALL + (f"?work_us={work}" if work else "")
                modes = {
                    "direct": (f"http://127.0.0.1:{up_port}{path}", ()),
                    "nginx": (f"http://127.0.0.1:{ng_port}{path}", (header,)),
                    "chronos": (f"http://127.0.0.1:{ch_port}{path}", (header,)),
                }
                rounds[work] = []
                for r in range(args.rounds):
                    print(f"upstream work {work} µs, round {r + 1}", flush=True)
                    names = list(modes)
                    names = names[r % 3:] + names[:r % 3]
                    rounds[work].append({name: measure(name, modes[name][0], args, server_side,
                                                       modes[name][1]) for name in names})
            print("first events", flush=True)
            first = first_events(args, ch_port, up_port, cookie)
            print(f"  {first}", flush=True)
            print(f"{args.streams} open streams", flush=True)
            memory = asyncio.run(open_streams(ch_port, cookie, args.streams, args.hold, chronos.proc.pid))
            print(f"  {memory}", flush=True)
        finally:
            nginx.terminate()
            chronos.stop()
            upstream.terminate()

    lines = [f"A small JSON GET (`{SMALL}`, bench/upstream.rs) directly, through nginx `auth_request` to "
             f"Chronos's /auth/verify, and through the Chronos proxy; {args.connections} connections, "
             f"{args.duration} s runs, {args.rounds} interleaved rounds per upstream; server side (upstream, "
             "Chronos, nginx, one worker) pinned to CPU 0, wrk to CPU 1. CPU and context switches per request are "
             "summed over every server-side process and thread (/proc), access logs on in both front ends. "
             "The upstream answers at once (0 µs: a bare hyper server, the proxy's worst case) or after "
             "spending CPU per answer (`work_us`, standing for a small real API's handler).", "",
             "| upstream work µs | round | mode | req/s | p99 ms | µs CPU/req | switches/req |",
             "|---:|---:|---|---:|---:|---:|---:|"]
    for work, runs in rounds.items():
        for i, pair in enumerate(runs, 1):
            for name in ("direct", "nginx", "chronos"):
                m = pair[name]
                lines.append(f"| {work} | {i} | {name} | {m['rps']:,.0f} | {m['p99_ms']:.2f} | {m['cpu_us']:.1f} "
                             f"| {m['switches']:.2f} |")

    def median_ratio(runs, a, b, key="rps"):
        return statistics.median(p[a][key] / p[b][key] for p in runs)

    lines += ["", "| upstream work µs | ratio (median of rounds) | throughput | CPU per request |",
              "|---:|---|---:|---:|"]
    for work, runs in rounds.items():
        for a, b in (("chronos", "nginx"), ("chronos", "direct"), ("nginx", "direct")):
            lines.append(f"| {work} | {a} / {b} | {median_ratio(runs, a, b):.2f} "
                         f"| {median_ratio(runs, a, b, 'cpu_us'):.2f} |")
    lines += ["",
              f"Time to the first event of a stream (a fresh connection each, the upstream sends its head at "
              f"once and the first event 50 ms later; {args.stream_samples} samples each, interleaved):", "",
              "| path | median ms | p90 ms |", "|---|---:|---:|"]
    for name in ("direct", "chronos"):
        lines.append(f"| {name} | {first[name]['median_ms']:.2f} | {first[name]['p90_ms']:.2f} |")
    lines += ["", f"Through Chronos minus direct, medians: "
              f"{first['chronos']['median_ms'] - first['direct']['median_ms']:.2f} ms.", "",
              f"Chronos's memory (VmRSS) with {memory['streams']} streams open through it, each getting an event "
              f"every 200 ms ({memory['events_during_hold']:,} events read in {memory['hold_s']} s):", "",
              "| before | all open | lowest while open | highest while open | after closing |",
              "|---:|---:|---:|---:|---:|",
              f"| {memory['rss_before_mib']:.1f} MiB | {memory['rss_open_mib']:.1f} MiB "
              f"| {memory['rss_min_mib']:.1f} MiB | {memory['rss_max_mib']:.1f} MiB "
              f"| {memory['rss_after_close_mib']:.1f} MiB |",
              "",
              f"Per open stream: {(memory['rss_max_mib'] - memory['rss_before_mib']) * 1024 / memory['streams']:.1f} KiB; "
              f"growth while open: {memory['rss_max_mib'] - memory['rss_min_mib']:.2f} MiB."]
    text = "\n".join(lines) + "\n"
    print(text)
    record.write("proxy", "bench/proxy.py", text,
                 data={"rounds": rounds, "first_event": first, "memory": memory})


if __name__ == "__main__":
    main()
