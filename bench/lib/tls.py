#!/usr/bin/env python3
"""TLS side by side (issue 24): headway, Envoy and HAProxy, one worker each, in front of the same
HTTPS nginx pods, in interleaved rounds (medians).

Cases, each run on a freshly started proxy:

  keepalive  wrk -t1 -c64, plain HTTP/1.1 kept alive to the proxy, which speaks TLS (verified
             against the bench CA, pooled) to the pods: req/s, proxy CPU µs per request
             (utime + stime from /proc), p50/p99, and the upstream handshakes the pods saw.
  full       new TLS connections at the proxy's TLS listener, 2 clients at once, each one
             connection at a time (Python's ssl, i.e. OpenSSL: a verified handshake with SNI and
             one `GET /`, read by its Content-Length, then closed): connections/s and proxy CPU
             µs per connection.
  resumed    the same, each connection offering the session (TLS 1.3: the ticket) the
             previous one received, as browsers do; the share resumed as the client saw it.
  upstream   h2load --h1 -n 10000 -c 64 (plain, kept alive) to a proxy that has made one
             request: the new upstream connections (= TLS handshakes) the pods saw in those
             10,000 requests, how many of them were resumed, and how many upstream connections
             the proxy holds open at the end (ss): handshakes vs pooled connections.

The pods' access log (`$connection $connection_requests $ssl_session_reused $ssl_protocol $msec`) is
the one view of upstream connections that applies to all three proxies alike.

Certificates (an RSA-2048 CA, a leaf for the pods' DNS name, a leaf for the gateway) are made by
the openssl command line in a temporary directory, removed at the end: none is kept or
committed. Standard library only. Writes bench/results/<timestamp>-tls/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (BENCH, REPO, Dns, Proc, cpu_model, cpu_seconds, http_get, log,  # noqa: E402
                    port_free, render, tool_version, wait_until)

DNS_ADDR, DNS_NAME = ("127.0.0.1", 15397), "pods.tls.bench"
POD_IPS, POD_PORT = ["127.0.25.11", "127.0.25.12"], 18743
GATEWAY_NAME = "gateway.tls.bench"
ADMIN_HEADWAY, ADMIN_ENVOY = 18790, 18791
# plain port, TLS port
PORTS = {"headway": (18700, 18710), "envoy": (18701, 18711), "haproxy": (18702, 18712),
         "headway-sysca": (18700, 18710)}
CASES = ("keepalive", "full", "resumed", "upstream")


# ---------------------------------------------------------------------------------------------
# certificates, made at run time


def openssl(*argv: str) -> None:
    subprocess.run(["openssl", *argv], check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> dict[str, Path]:
    """A CA and two leaves signed by it (RSA 2048, the common key of cert-manager and most
    sites): the pods' (`pods.tls.bench`) and the gateway's (`gateway.tls.bench`)."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bench CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    out = {"ca": d / "ca.pem"}
    for who, name in (("pod", DNS_NAME), ("gateway", GATEWAY_NAME)):
        ext = d / f"{who}.ext"
        ext.write_text(f"subjectAltName=DNS:{name}\nbasicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", str(d / f"{who}.key"), "-out", str(d / f"{who}.csr"))
        openssl("x509", "-req", "-in", str(d / f"{who}.csr"), "-CA", str(d / "ca.pem"),
                "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
                "-extfile", str(ext), "-out", str(d / f"{who}.pem"))
        out[f"{who}_cert"], out[f"{who}_key"] = d / f"{who}.pem", d / f"{who}.key"
    # HAProxy's `crt` takes the chain and the key in one file.
    (d / "gateway-haproxy.pem").write_bytes(out["gateway_cert"].read_bytes()
                                            + out["gateway_key"].read_bytes())
    out["gateway_pem"] = d / "gateway-haproxy.pem"
    return out


# ---------------------------------------------------------------------------------------------
# the pods


class Pod:
    """Debian's nginx serving HTTPS on one loopback address, one worker."""

    def __init__(self, d: Path, ip: str, pki: dict[str, Path], keepalive_requests: int):
        self.ip, self.dir = ip, d
        d.mkdir(parents=True, exist_ok=True)
        if not port_free(ip, POD_PORT):
            raise RuntimeError(f"{ip}:{POD_PORT} is in use: is another benchmark running?")
        conf = render("tls-pod-nginx.conf", d / "nginx.conf", DIR=d, POD_IP=ip, POD_PORT=POD_PORT,
                      CERT=pki["pod_cert"], KEY=pki["pod_key"],
                      POD_KEEPALIVE_REQUESTS=keepalive_requests)
        self.proc = Proc(f"pod {ip}", ["nginx", "-p", str(d), "-c", str(conf), "-e", "stderr",
                                       "-g", "daemon off;"], d / "nginx.log")
        ctx = ssl.create_default_context(cafile=str(pki["ca"]))
        if not wait_until(lambda: https_get(ip, POD_PORT, ctx, DNS_NAME)[0] == 200, 10):
            self.proc.stop()
            raise RuntimeError(f"pod {ip} did not answer:\n" + self.proc.tail())
        self.log = d / "access.log"

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def lines_since(self, offset: int) -> list[list[str]]:
        with open(self.log, "rb") as f:
            f.seek(offset)
            return [line.split() for line in f.read().decode(errors="replace").splitlines()]

    def stop(self) -> None:
        self.proc.stop()

    def keep_handshakes(self) -> None:
        """Keeps the log's first request of each connection (its handshake) in handshakes.log and
        drops the rest: a run logs about a million requests, which the results need not hold."""
        if not self.log.exists():
            return
        n = 0
        with open(self.log) as src, open(self.dir / "handshakes.log", "w") as dst:
            for line in src:
                n += 1
                f = line.split()
                if len(f) > 1 and f[1] == "1":
                    dst.write(line)
        (self.dir / "access-summary.txt").write_text(
            f"{n} requests logged; handshakes.log keeps the first request of each connection\n")
        self.log.unlink()


def https_get(ip: str, port: int, ctx: ssl.SSLContext, name: str) -> tuple[int, str, str]:
    """GET / over TLS; (status, body, TLS version)."""
    with socket.create_connection((ip, port), timeout=3) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            s.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            return int(head.split()[1]), body.decode(errors="replace"), s.version() or "?"


# ---------------------------------------------------------------------------------------------
# the peers


class Peer:
    name = ""

    def __init__(self, ctx: "Ctx"):
        self.ctx = ctx
        self.plain, self.tls = PORTS[self.name]

    def start(self, d: Path) -> Proc:
        raise NotImplementedError

    def common(self, d: Path) -> dict:
        p = self.ctx.pki
        return dict(DIR=d, DNS_NAME=DNS_NAME, POD_PORT=POD_PORT, CA=p["ca"],
                    GATEWAY_CERT=p["gateway_cert"], GATEWAY_KEY=p["gateway_key"],
                    GATEWAY_PEM=p["gateway_pem"], DNS_ADDR=f"{DNS_ADDR[0]}:{DNS_ADDR[1]}",
                    PLAIN_LISTEN=f"127.0.0.1:{self.plain}", TLS_LISTEN=f"127.0.0.1:{self.tls}")


class Headway(Peer):
    name = "headway"

    def start(self, d):
        conf = render("tls-headway.yaml", d / "headway.yaml", ADMIN_LISTEN=f"127.0.0.1:{ADMIN_HEADWAY}",
                      HEADWAY_CA=f'ca: "{self.ctx.pki["ca"]}"', **self.common(d))
        return Proc("headway", [str(self.ctx.headway_bin), "-c", str(conf)], d / "proxy.log",
                    env={"RUST_LOG": "warn"}, stop_signal=signal.SIGINT)


class HeadwaySysCa(Peer):
    """headway with the cluster's `ca` left out and the bench CA as the process's roots
    (SSL_CERT_FILE, read by pingora's connector at start): pingora then hands every connection
    the one client configuration it built, whose session cache lets it resume; with `ca` set it
    builds a configuration, and an empty cache, per connection."""
    name = "headway-sysca"

    def start(self, d):
        conf = render("tls-headway.yaml", d / "headway.yaml", ADMIN_LISTEN=f"127.0.0.1:{ADMIN_HEADWAY}",
                      HEADWAY_CA="# no ca: SSL_CERT_FILE", **self.common(d))
        return Proc("headway", [str(self.ctx.headway_bin), "-c", str(conf)], d / "proxy.log",
                    env={"RUST_LOG": "warn", "SSL_CERT_FILE": str(self.ctx.pki["ca"])},
                    stop_signal=signal.SIGINT)


class Envoy(Peer):
    name = "envoy"

    def start(self, d):
        conf = render("tls-envoy.yaml", d / "envoy.yaml", ADMIN_PORT=ADMIN_ENVOY, PLAIN_PORT=self.plain,
                      TLS_PORT=self.tls, DNS_IP=DNS_ADDR[0], DNS_PORT=DNS_ADDR[1], **self.common(d))
        argv = [self.ctx.envoy_bin, "-c", str(conf), "--concurrency", "1", "--disable-hot-restart",
                "--log-level", "warn"]
        return Proc("envoy", argv, d / "proxy.log")


class HAProxy(Peer):
    name = "haproxy"

    def start(self, d):
        conf = render("tls-haproxy.cfg", d / "haproxy.cfg", **self.common(d))
        return Proc("haproxy", ["haproxy", "-db", "-f", str(conf)], d / "proxy.log")


# ---------------------------------------------------------------------------------------------
# the clients


def wrk(port: int, duration: str, conns: int, out: Path) -> dict:
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{duration}", "--latency", "-s",
            str(BENCH / "lib" / "report.lua"), f"http://127.0.0.1:{port}/"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    out.write_text("$ " + " ".join(argv) + "\n" + res.stdout + res.stderr)
    for line in res.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    raise RuntimeError(f"wrk printed no result: {res.stderr[:300]}")


REQUEST = f"GET / HTTP/1.1\r\nHost: {GATEWAY_NAME}\r\n\r\n".encode()


def handshake_client(port: int, seconds: float, resume: bool, cafile: str) -> dict:
    """One client, one connection at a time for `seconds`: a handshake (verified, with SNI) and
    one `GET /` (HTTP/1.1, read by its Content-Length; then the client closes). With `resume`, each connection offers the session
    (TLS 1.3: the ticket) the previous one received, as browsers do (a TLS 1.3 ticket is for
    one use: rustls, as RFC 8446 advises, takes each once)."""
    ctx = ssl.create_default_context(cafile=cafile)
    session, conns, resumed, failed, first_error = None, 0, 0, 0, None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                # As curl and browsers: without it, Nagle holds the request behind the
                # unacknowledged Finished, and a server that sends nothing back at once (Envoy)
                # answers 40 ms (a delayed ACK) later.
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with ctx.wrap_socket(raw, server_hostname=GATEWAY_NAME,
                                     session=session if resume else None) as s:
                    s.sendall(REQUEST)
                    data = b""
                    while b"\r\n\r\n" not in data and (chunk := s.recv(65536)):
                        data += chunk
                    head, _, body = data.partition(b"\r\n\r\n")
                    if not head.startswith(b"HTTP/1.1 200 "):
                        raise OSError(f"answer {data[:40]!r}")
                    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                    want = int(m.group(1)) if m else 0
                    while len(body) < want and (chunk := s.recv(65536)):
                        body += chunk
                    conns += 1
                    resumed += s.session_reused
                    session = s.session
        except OSError as e:
            failed += 1
            first_error = first_error or repr(e)
    if first_error:
        print(f"first failure: {first_error}", file=sys.stderr)
    return {"connections": conns, "sessions_resumed": resumed,
            "sessions_new": conns - resumed, "failed": failed}


def handshake_clients(port: int, resume: bool, seconds: int, clients: int, cafile: str,
                      out: Path) -> dict:
    """`clients` processes of [`handshake_client`] at once, their counts summed."""
    argv = [sys.executable, __file__, "--handshake-client", str(port), str(seconds),
            "resume" if resume else "full", cafile]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(clients)]
    total: dict[str, int] = {}
    texts = []
    for p in procs:
        text, _ = p.communicate(timeout=seconds + 60)
        texts.append(text)
        try:
            for k, v in json.loads(text.strip().splitlines()[-1]).items():
                total[k] = total.get(k, 0) + v
        except (ValueError, IndexError) as e:
            raise RuntimeError(f"handshake client printed no result: {text[-500:]}") from e
    out.write_text("$ " + " ".join(argv) + f"  (× {clients})\n" + "\n".join(texts))
    return total


def h2load(port: int, n: int, conns: int, out: Path) -> dict:
    argv = ["h2load", "--h1", "-t1", f"-c{conns}", f"-n{n}", f"http://127.0.0.1:{port}/"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    out.write_text("$ " + " ".join(argv) + "\n" + res.stdout + res.stderr)
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed",
                  res.stdout)
    if not m:
        raise RuntimeError(f"h2load printed no result: {res.stdout[-300:]} {res.stderr[-300:]}")
    return {"requests": int(m.group(4)), "failed": int(m.group(5))}


def upstream_conns_open(pid_list: list[int]) -> int:
    """Established TCP connections from the proxy to the pods' port (ss, filtered by pid)."""
    res = subprocess.run(["ss", "-Htnp", "state", "established", f"dport = :{POD_PORT}"],
                         capture_output=True, text=True, timeout=10)
    pids = {f"pid={p}," for p in pid_list}
    return sum(1 for line in res.stdout.splitlines() if any(p in line for p in pids))


# ---------------------------------------------------------------------------------------------
# one run


class Ctx:
    def __init__(self, args, pki, pods):
        self.args, self.pki, self.pods = args, pki, pods
        self.headway_bin, self.envoy_bin = args.headway_bin, args.envoy_bin


def pods_since(ctx: Ctx, offsets: list[int]) -> dict:
    """What the pods logged since `offsets`: requests, new connections (a handshake each: the
    first request of a connection), resumed ones, TLS versions."""
    time.sleep(0.5)  # the last answers' lines (the log is unbuffered)
    requests = handshakes = resumed = 0
    versions: dict[str, int] = {}
    for pod, off in zip(ctx.pods, offsets):
        for f in pod.lines_since(off):
            if len(f) < 4:
                continue
            requests += 1
            if f[1] == "1":
                handshakes += 1
                resumed += f[2] == "r"
                versions[f[3]] = versions.get(f[3], 0) + 1
    return {"pod_requests": requests, "handshakes": handshakes, "resumed": resumed,
            "versions": versions}


def run_one(ctx: Ctx, peer: Peer, case: str, d: Path) -> dict:
    a = ctx.args
    d.mkdir(parents=True, exist_ok=True)
    for port in (peer.plain, peer.tls):
        if not port_free("127.0.0.1", port):
            raise RuntimeError(f"127.0.0.1:{port} is in use")
    proc = peer.start(d)
    try:
        tls_ctx = ssl.create_default_context(cafile=str(ctx.pki["ca"]))

        def routed():
            status, body, _ = http_get("127.0.0.1", peer.plain)
            return status == 200 and body.startswith("pod")
        if not wait_until(routed, 30, 0.2):
            raise RuntimeError(f"{peer.name} did not route to the pods:\n{proc.tail()}")
        status, body, version = https_get("127.0.0.1", peer.tls, tls_ctx, GATEWAY_NAME)
        if status != 200:
            raise RuntimeError(f"{peer.name}'s TLS listener answered {status} {body[:100]}")
        rec = {"peer": peer.name, "case": case, "listener_tls": version,
               "pod_answer": body.strip()}
        pids = proc.pids()
        if case == "keepalive":
            wrk(peer.plain, a.warmup, a.connections, d / "wrk-warmup.txt")
            offsets = [p.log_size() for p in ctx.pods]
            cpu0 = cpu_seconds(pids)
            w = wrk(peer.plain, a.duration, a.connections, d / "wrk.txt")
            cpu1 = cpu_seconds(proc.pids())
            n = w["requests"]
            rec.update(requests=n, rps=n / (w["duration_us"] / 1e6), cpu_s=cpu1 - cpu0,
                       cpu_us_per_req=(cpu1 - cpu0) * 1e6 / max(n, 1), p50_us=w["p50_us"],
                       p99_us=w["p99_us"], errors=sum(w[k] for k in w if k.startswith("errors_")))
            rec.update(pods_since(ctx, offsets))
        elif case in ("full", "resumed"):
            cafile, secs, n = str(ctx.pki["ca"]), a.handshake_seconds, a.handshake_clients
            resume = case == "resumed"
            handshake_clients(peer.tls, resume, 1, 1, cafile, d / "warmup.txt")
            cpu0, t0 = cpu_seconds(pids), time.monotonic()
            s = handshake_clients(peer.tls, resume, secs, n, cafile, d / "clients.txt")
            wall, cpu1 = time.monotonic() - t0, cpu_seconds(proc.pids())
            rec.update(s, conns_per_s=s["connections"] / wall, wall_s=wall, cpu_s=cpu1 - cpu0,
                       cpu_us_per_conn=(cpu1 - cpu0) * 1e6 / max(s["connections"], 1))
        elif case == "upstream":
            offsets = [p.log_size() for p in ctx.pods]
            h = h2load(peer.plain, a.upstream_requests, a.connections, d / "h2load.txt")
            rec.update(h, pooled_open=upstream_conns_open(proc.pids()))
            rec.update(pods_since(ctx, offsets))
            rec["handshakes_per_10k"] = rec["handshakes"] * 10000 / max(h["requests"], 1)
        if not proc.alive():
            raise RuntimeError(f"{peer.name} exited during the run:\n{proc.tail()}")
        return rec
    finally:
        proc.stop()


# ---------------------------------------------------------------------------------------------
# the report


def med(records: list[dict], peer: str, case: str, key: str):
    vals = [r[key] for r in records if r["peer"] == peer and r["case"] == case and key in r]
    return statistics.median(vals) if vals else None


def rounds(records: list[dict], peer: str, case: str, key: str, fmt: str) -> str:
    vals = [r[key] for r in records if r["peer"] == peer and r["case"] == case and key in r]
    return "[" + ", ".join(format(v, fmt) for v in vals) + "]"


def ratio(a, b) -> str:
    return f"{a / b:.2f}×" if a is not None and b else "—"


def report(records: list[dict], args, peers: list[str], started: str, env: dict) -> str:
    def m(p, c, k):
        return med(records, p, c, k)

    smoke = "**SMOKE RUN — not results**\n\n" if args.smoke else ""
    out = [
        f"{smoke}# TLS side by side ({started}, {args.rounds} rounds, medians)\n",
        f"- command: `{env['command']}`; commit {env['commit']}",
        f"- machine: {env['cpu']}, {env['cpus']} CPUs, load average at start {env['load']} "
        "(shared: other builds ran during the rounds)",
        f"- versions: {env['versions']}",
        f"- pods: {len(POD_IPS)} × nginx (1 worker, TLS 1.2–1.3, session cache, keepalive_requests "
        f"{args.pod_keepalive_requests:,}), found by DNS as "
        f"`{DNS_NAME}`; certificates RSA-2048, made at run time; every proxy one worker, "
        "upstream TLS verified against the bench CA for the SNI name, HTTP/1.1 kept alive",
        "",
    ]
    if "keepalive" in args.cases:
        out += [
            f"## Keep-alive through upstream TLS (`wrk -t1 -c{args.connections} -d{args.duration}`, "
            "plain HTTP/1.1 to the proxy)\n",
            "| peer | req/s | rounds | CPU µs / request | rounds | p50 µs | p99 µs | errors "
            "| new upstream connections in the run (resumed) |",
            "|---|---:|---|---:|---|---:|---:|---:|---:|",
        ]
        for p in peers:
            if m(p, "keepalive", "rps") is None:
                continue
            out.append(
                f"| {p} | **{m(p, 'keepalive', 'rps'):,.0f}** | {rounds(records, p, 'keepalive', 'rps', ',.0f')} "
                f"| **{m(p, 'keepalive', 'cpu_us_per_req'):.1f}** "
                f"| {rounds(records, p, 'keepalive', 'cpu_us_per_req', '.1f')} "
                f"| {m(p, 'keepalive', 'p50_us'):,.0f} | {m(p, 'keepalive', 'p99_us'):,.0f} "
                f"| {m(p, 'keepalive', 'errors'):.0f} | {m(p, 'keepalive', 'handshakes'):.0f} "
                f"({m(p, 'keepalive', 'resumed'):.0f}) |")
        h = "headway"
        for other in ("envoy", "haproxy"):
            if m(h, "keepalive", "rps") and m(other, "keepalive", "rps"):
                out.append(f"\nheadway / {other}: throughput "
                           f"{ratio(m(h, 'keepalive', 'rps'), m(other, 'keepalive', 'rps'))}, "
                           f"CPU per request {ratio(m(h, 'keepalive', 'cpu_us_per_req'), m(other, 'keepalive', 'cpu_us_per_req'))}")
        out.append("")
    if {"full", "resumed"} & set(args.cases):
        out += [
            f"## New TLS connections at the listener ({args.handshake_clients} clients at once, "
            f"{args.handshake_seconds} s, one connection at a time each; a handshake and one "
            "`GET /` per connection)\n",
            "full: no session offered; resumed: each connection offers the session (TLS 1.3 "
            "ticket) the previous one got, as browsers do.\n",
            "| peer | full: conn/s | CPU µs / conn | rounds | resumed: conn/s | CPU µs / conn "
            "| rounds | resumed | failed |",
            "|---|---:|---:|---|---:|---:|---|---:|---:|",
        ]
        for p in peers:
            def cell(c, k, fmt):
                v = m(p, c, k)
                return format(v, fmt) if v is not None else "—"

            def share(c):
                res, new = m(p, c, "sessions_resumed"), m(p, c, "sessions_new")
                return f"{res / (res + new):.0%}" if res is not None and res + new else "—"
            out.append(
                f"| {p} | **{cell('full', 'conns_per_s', ',.0f')}** | **{cell('full', 'cpu_us_per_conn', ',.0f')}** "
                f"| {rounds(records, p, 'full', 'cpu_us_per_conn', ',.0f')} "
                f"| **{cell('resumed', 'conns_per_s', ',.0f')}** | **{cell('resumed', 'cpu_us_per_conn', ',.0f')}** "
                f"| {rounds(records, p, 'resumed', 'cpu_us_per_conn', ',.0f')} | {share('resumed')} "
                f"| {sum(r.get('failed', 0) for r in records if r['peer'] == p and r['case'] in ('full', 'resumed'))} |")
        h = "headway"
        for other in ("envoy", "haproxy"):
            for c in ("full", "resumed"):
                if m(h, c, "cpu_us_per_conn") and m(other, c, "cpu_us_per_conn"):
                    out.append(f"\nheadway / {other}, {c}: connections/s "
                               f"{ratio(m(h, c, 'conns_per_s'), m(other, c, 'conns_per_s'))}, CPU per "
                               f"connection {ratio(m(h, c, 'cpu_us_per_conn'), m(other, c, 'cpu_us_per_conn'))}")
        out.append("")
    if "upstream" in args.cases:
        out += [
            f"## Upstream handshakes per {args.upstream_requests:,} keep-alive requests "
            f"(`h2load --h1 -c{args.connections} -n{args.upstream_requests}`, on a proxy that "
            "has served one request)\n",
            "| peer | handshakes at the pods | rounds | of them resumed | upstream connections "
            "open at the end | per 10,000 requests | TLS |",
            "|---|---:|---|---:|---:|---:|---|",
        ]
        for p in peers:
            if m(p, "upstream", "handshakes") is None:
                continue
            versions = sorted({v for r in records if r["peer"] == p and r["case"] == "upstream"
                               for v in r.get("versions", {})})
            out.append(
                f"| {p} | **{m(p, 'upstream', 'handshakes'):.0f}** "
                f"| {rounds(records, p, 'upstream', 'handshakes', '.0f')} "
                f"| {m(p, 'upstream', 'resumed'):.0f} | {m(p, 'upstream', 'pooled_open'):.0f} "
                f"| {m(p, 'upstream', 'handshakes_per_10k'):.0f} | {', '.join(versions)} |")
        out.append("")
    return "\n".join(out) + "\n"


def environment(args) -> dict:
    def first(argv, pattern):
        m = re.search(pattern, tool_version(argv))
        return m.group(1) if m else "?"
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "src", "Cargo.lock"],
                           capture_output=True, text=True).stdout.strip()
    envoy = subprocess.run([args.envoy_bin, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"/(\d+\.\d+\.\d+)/", envoy)
    return {
        "command": os.environ.get("BENCH_COMMAND", "bench/tls.sh"),
        "commit": commit + (" + uncommitted src/" if dirty else ""),
        "cpu": cpu_model(), "cpus": os.cpu_count(),
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "versions": ", ".join([
            f"Envoy {m.group(1) if m else '?'}",
            "HAProxy " + first(["haproxy", "-v"], r"version (\S+)"),
            "nginx " + first(["nginx", "-v"], r"nginx/(\S+)"),
            first(["openssl", "version"], r"(OpenSSL \S+)"),
            "wrk " + first(["wrk", "-v"], r"wrk (\S+)"),
            "h2load " + first(["h2load", "--version"], r"nghttp2/(\S+)"),
        ]),
    }


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--handshake-client":
        port, seconds, mode, cafile = sys.argv[2:]
        print(json.dumps(handshake_client(int(port), float(seconds), mode == "resume", cafile)))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--peers", default="headway,envoy,haproxy")
    ap.add_argument("--duration", default="10s", help="keepalive: wrk's measured run")
    ap.add_argument("--warmup", default="2s", help="keepalive: wrk's warm-up, not measured")
    ap.add_argument("--connections", type=int, default=64, help="keepalive and upstream clients")
    ap.add_argument("--handshake-seconds", type=int, default=10)
    ap.add_argument("--handshake-clients", type=int, default=2)
    ap.add_argument("--upstream-requests", type=int, default=10000)
    ap.add_argument("--pod-keepalive-requests", type=int, default=100000000,
                    help="the pods close a connection after this many requests (nginx's "
                    "keepalive_requests; its default is 1,000): a low value makes upstream "
                    "connections churn, so that each peer's upstream handshakes show in its CPU")
    ap.add_argument("--smoke", action="store_true", help="1 round of short runs")
    ap.add_argument("--headway-bin", type=Path,
                    default=Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "release" / "headway")
    ap.add_argument("--envoy-bin", default=os.environ.get("ENVOY_BIN") or shutil.which("envoy"))
    args = ap.parse_args()
    if args.smoke:
        args.rounds, args.duration, args.warmup, args.handshake_seconds = 1, "2s", "1s", 2
        args.upstream_requests = 2000
    args.cases = [c for c in args.cases.split(",") if c]
    peers = [p for p in args.peers.split(",") if p]
    for c in args.cases:
        if c not in CASES:
            ap.error(f"unknown case {c}: {', '.join(CASES)}")
    for p in peers:
        if p not in PORTS:
            ap.error(f"unknown peer {p}: {', '.join(PORTS)}")
    dns_bin = args.headway_bin.parent / "headless-dns"
    for b in (args.headway_bin, dns_bin):
        if not b.exists():
            ap.error(f"missing {b} (cargo build --release --bin headway -p headless-dns)")
    if "envoy" in peers and not args.envoy_bin:
        ap.error("envoy not found: put it on PATH or pass --envoy-bin")

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = REPO / "bench" / "results" / (time.strftime("%Y%m%d-%H%M%S") + "-tls")
    out.mkdir(parents=True)
    env = environment(args)
    (out / "env.json").write_text(json.dumps(env, indent=1))
    keys = Path(tempfile.mkdtemp(prefix="headway-tls-bench-"))
    records: list[dict] = []
    pods: list[Pod] = []
    dns = None
    try:
        pki = make_pki(keys)
        for i, ip in enumerate(POD_IPS):
            pods.append(Pod(out / "raw" / f"pod{i + 1}", ip, pki, args.pod_keepalive_requests))
        dns = Dns(out / "raw", dns_bin, DNS_ADDR[0], DNS_ADDR[1], {DNS_NAME: POD_IPS}, None)
        ctx = Ctx(args, pki, pods)
        classes = {"headway": Headway, "envoy": Envoy, "haproxy": HAProxy,
                   "headway-sysca": HeadwaySysCa}
        for r in range(1, args.rounds + 1):
            for case in args.cases:
                # Each round starts the peers in another order: no peer always runs first.
                order = peers[(r - 1) % len(peers):] + peers[:(r - 1) % len(peers)]
                for name in order:
                    rec = run_one(ctx, classes[name](ctx), case, out / "raw" / case / f"r{r}-{name}")
                    rec["round"] = r
                    records.append(rec)
                    log(f"round {r} {case:9} {name:8} " + ", ".join(
                        f"{k}={v:,.1f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in rec.items() if k not in ("peer", "case", "round")))
    finally:
        if dns:
            dns.stop()
        for p in pods:
            p.stop()
            p.keep_handshakes()
        shutil.rmtree(keys, ignore_errors=True)
        (out / "results.json").write_text(json.dumps({"env": env, "runs": records}, indent=1))
    text = report(records, args, peers, started, env)
    (out / "results.md").write_text(text)
    print(text)
    log(f"written to {out}")


if __name__ == "__main__":
    main()
