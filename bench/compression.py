#!/usr/bin/env python3
"""The `compression` filter's cost and gain (issue 17): CPU of the gateway per request with and
without compression, and the ratio each coding and level achieves, on a ~64 KB JSON body.

nginx serves the body (gzip off) on loopback; headway (release build, one worker, access log
off) proxies it on a route without filters (`/plain/`), on a route with the filter at its
defaults (`/c/`), and on routes with one coding at one level each (`/gzip-1/`, …). One client
connection sends keep-alive GETs one at a time with the case's `Accept-Encoding`. The gateway's
CPU per request is the growth of its threads' on-CPU time (/proc/<pid>/task/*/schedstat, in
nanoseconds) over N requests, divided by N; each case runs R rounds, the table shows medians.
Every case's body is checked: curl --compressed must decode it to the file nginx serves.

    bench/compression.py [--bin target/release/headway] [--requests 400] [--rounds 3]

Standard library only (plus curl for the check). Writes bench/results/<timestamp>-compression/.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))
from common import REPO, Proc, log, wait_until  # noqa: E402

NGINX = ("127.0.20.1", 18181)
GATEWAY = ("127.0.20.2", 18182)
ADMIN = ("127.0.20.2", 18183)

# (route, Accept-Encoding, what it measures)
CASES = [
    ("/plain/", "gzip, deflate, br, zstd", "route without the filter"),
    ("/c/", "identity", "filter installed, client takes none"),
    ("/c/", "gzip", "defaults: gzip 6"),
    ("/c/", "br", "defaults: br 4"),
    ("/c/", "zstd", "defaults: zstd 3"),
    ("/c/", "gzip, deflate, br, zstd", "defaults, a browser's header (zstd)"),
    ("/gzip-1/", "gzip", "gzip 1"),
    ("/gzip-9/", "gzip", "gzip 9"),
    ("/br-1/", "br", "br 1"),
    ("/br-5/", "br", "br 5"),
    ("/br-6/", "br", "br 6"),
    ("/br-9/", "br", "br 9"),
    ("/zstd-1/", "zstd", "zstd 1"),
    ("/zstd-6/", "zstd", "zstd 6"),
    ("/zstd-9/", "zstd", "zstd 9"),
]


def body() -> bytes:
    """~64 KB of an API's JSON list answer: ids, names, emails, timestamps, nested tags."""
    rnd = random.Random(17)
    words = ["alpha", "beta", "gamma", "delta", "north", "south", "widget", "gadget", "blue",
             "green", "small", "large", "order", "refund", "pending", "shipped", "Berlin", "Lyon"]
    items = []
    while sum(len(i) for i in items) < 64_000:
        n = len(items)
        items.append(json.dumps({
            "id": 100_000 + n * 7 + rnd.randrange(7),
            "name": f"{rnd.choice(words)} {rnd.choice(words)} {n}",
            "email": f"user{rnd.randrange(10**6)}@example.com",
            "created_at": f"2026-{rnd.randrange(1, 13):02}-{rnd.randrange(1, 29):02}T"
                          f"{rnd.randrange(24):02}:{rnd.randrange(60):02}:00Z",
            "status": rnd.choice(["pending", "shipped", "delivered", "refunded"]),
            "total": round(rnd.uniform(1, 900), 2),
            "tags": rnd.sample(words, 3),
        }, separators=(",", ":")))
    return ("[" + ",".join(items) + "]").encode()


def nginx_conf(d: Path) -> Path:
    conf = d / "nginx.conf"
    conf.write_text(f"""daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    gzip off;
    keepalive_requests 100000000;
    client_body_temp_path {d}/cb; proxy_temp_path {d}/px; fastcgi_temp_path {d}/fc;
    uwsgi_temp_path {d}/uw; scgi_temp_path {d}/sc;
    server {{
        listen {NGINX[0]}:{NGINX[1]};
        location / {{ root {d}/www; default_type application/json; try_files /data.json =404; }}
    }}
}}
""")
    return conf


def headway_conf(d: Path) -> Path:
    routes = ["    - { prefix: /plain/, cluster: origin }",
              "    - { prefix: /c/, cluster: origin, filters: [{ name: compression }] }"]
    for route, _, _ in CASES:
        name = route.strip("/")
        if "-" in name:
            coding, level = name.split("-")
            routes.append(f"    - {{ prefix: {route}, cluster: origin, filters: [{{ name: compression,"
                          f" algorithms: [{coding}], levels: {{ {coding}: {level} }} }}] }}")
    conf = d / "headway.yaml"
    conf.write_text("\n".join([
        "version: 1", "threads: 1", f"pid_file: {d}/headway.pid",
        f"upgrade_sock: {d}/headway_upgrade.sock", "grace_period_seconds: 1",
        "graceful_shutdown_timeout_seconds: 1", "gateway:",
        f'  listen: ["{GATEWAY[0]}:{GATEWAY[1]}"]', f'  admin: {{ listen: "{ADMIN[0]}:{ADMIN[1]}" }}',
        "  drain_time: 0s", "  access_log: { enabled: false }", "  routes:", *routes,
        "  clusters:", f"    - {{ name: origin, address: {NGINX[0]}, port: {NGINX[1]},"
        " connect_timeout: 1s, outlier_detection: { consecutive_failures: 0 } }", ""]))
    return conf


def on_cpu_ns(pid: int) -> int:
    """Nanoseconds on CPU of every live thread of `pid` (schedstat's first field)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def get(sock: socket.socket, buf: bytearray, path: str, accept: str) -> tuple[int, dict, int]:
    """One keep-alive GET; (status, headers, body bytes as sent: after de-chunking)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept-Encoding: {accept}\r\n\r\n".encode())

    def fill() -> None:
        chunk = sock.recv(262144)
        if not chunk:
            raise ConnectionError("closed")
        buf.extend(chunk)

    while b"\r\n\r\n" not in buf:
        fill()
    end = buf.index(b"\r\n\r\n")
    lines = buf[:end].decode("latin-1").split("\r\n")
    del buf[: end + 4]
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(buf) < n:
            fill()
        del buf[:n]
        return status, headers, n
    size = 0
    while True:
        while b"\r\n" not in buf:
            fill()
        i = buf.index(b"\r\n")
        n = int(buf[:i].split(b";")[0], 16)
        while len(buf) < i + 2 + n + 2:
            fill()
        del buf[: i + 2 + n + 2]
        if n == 0:
            return status, headers, size
        size += n


def check(path: str, accept: str, expect: bytes) -> str:
    """curl --compressed decodes the case's body to the original; returns its Content-Encoding."""
    url = f"http://{GATEWAY[0]}:{GATEWAY[1]}{path}data.json"
    out = subprocess.run(["curl", "-sS", "--compressed", "-H", f"accept-encoding: {accept}",
                          "-D", "/dev/stderr", url], capture_output=True, timeout=10)
    if out.stdout != expect:
        raise SystemExit(f"{path} ({accept}): curl's decoded body differs from the original")
    for line in out.stderr.decode("latin-1").splitlines():
        if line.lower().startswith("content-encoding:"):
            return line.split(":", 1)[1].strip()
    return "identity"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(REPO / "target" / "release" / "headway"))
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    data = body()
    out = REPO / "bench" / "results" / (time.strftime("%Y%m%d-%H%M%S") + "-compression")
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        d.chmod(0o755)  # nginx's worker runs as another user
        (d / "www").mkdir()
        (d / "www" / "data.json").write_bytes(data)
        nginx = Proc("nginx", ["nginx", "-e", "stderr", "-c", str(nginx_conf(d))], out / "nginx.log")
        gateway = Proc("headway", [args.bin, "-c", str(headway_conf(d))], out / "headway.log",
                       env={"RUST_LOG": "warn"})
        try:
            ready = wait_until(lambda: subprocess.run(
                ["curl", "-sf", f"http://{ADMIN[0]}:{ADMIN[1]}/ready"], capture_output=True
            ).returncode == 0, 15)
            if not ready:
                raise SystemExit("headway not ready:\n" + gateway.tail())
            rows = measure(args, gateway, data)
        finally:
            gateway.stop()
            nginx.stop()
    table = report(args, rows, data)
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print(table)
    log(f"written to {out}")
    return 0


def measure(args, gateway: Proc, data: bytes) -> list[dict]:
    rows = []
    for path, accept, what in CASES:
        coding = check(path, accept, data)
        sock = socket.create_connection(GATEWAY, timeout=10)
        buf = bytearray()
        for _ in range(20):  # warm-up: pooled upstream connection, allocator, caches
            get(sock, buf, path + "data.json", accept)
        per_request, sizes = [], set()
        for _ in range(args.rounds):
            before = on_cpu_ns(gateway.pid)
            for _ in range(args.requests):
                status, _, size = get(sock, buf, path + "data.json", accept)
                if status != 200:
                    raise SystemExit(f"{path}: status {status}")
                sizes.add(size)
            per_request.append((on_cpu_ns(gateway.pid) - before) / args.requests / 1000)
        sock.close()
        size = max(sizes)
        rows.append({"route": path, "accept_encoding": accept, "what": what, "coding": coding,
                     "us_per_request": per_request, "median_us": statistics.median(per_request),
                     "bytes": size, "ratio": len(data) / size})
        log(f"{path:10} {accept:24} {coding:8} {statistics.median(per_request):8.1f} µs  "
            f"{size:6} B  ×{len(data) / size:.2f}")
    return rows


def report(args, rows: list[dict], data: bytes) -> str:
    base = rows[0]["median_us"]
    lines = [f"body: {len(data):,} bytes of JSON; {args.requests} requests × {args.rounds} rounds "
             "per case, one keep-alive connection, one request at a time; medians", "",
             "| route | Accept-Encoding | sent as | gateway CPU µs/request | × route without filter "
             "| bytes sent | ratio | rounds (µs) |", "|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        spread = " – ".join(f"{x:.1f}" for x in (min(r["us_per_request"]), max(r["us_per_request"])))
        lines.append(f"| `{r['route']}` ({r['what']}) | `{r['accept_encoding']}` | {r['coding']} | "
                     f"{r['median_us']:.1f} | {r['median_us'] / base:.2f} | {r['bytes']:,} | "
                     f"{r['ratio']:.2f} | {spread} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
