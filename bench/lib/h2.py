#!/usr/bin/env python3
"""HTTP/2 side by side (issue 25 item 6): headway, Envoy and HAProxy, one worker each, in front
of the same nginx, driven by h2load (-c 16 -m 10: 16 connections, 10 streams each), in
interleaved rounds (medians).

Paths:

  grpc  h2c (HTTP/2 with prior knowledge) from the client, h2c to nginx's h2c port: the path
        of gRPC. Every answer must come from the h2c port (`backend HTTP/2.0`).
  tls   HTTP/2 over TLS at the proxy's listener (h2 by ALPN), HTTP/1.1 kept alive to nginx.

For each: req/s (h2load's, over a bounded count of requests) and the proxy's CPU µs per request
(utime + stime of its processes from /proc, over the same requests). Each run starts the proxy
afresh, checks one request with curl (the protocol at the proxy and the nginx port that
answered), warms up, then measures. The upstream is an IP literal (a STATIC cluster in Envoy, a
plain server line in HAProxy, an IP `address:` in headway): the protocols' cost, not discovery.

The TLS certificate (self-signed, RSA 2048) is made by the openssl command line in a temporary
directory, removed at the end. Standard library only. Writes bench/results/<timestamp>-h2/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (BENCH, REPO, Backend, Proc, cpu_model, cpu_seconds, log,  # noqa: E402
                    port_free, tool_version, wait_until)

BACKEND_IP, BACKEND_H1, BACKEND_H2C = "127.0.26.1", 18881, 18882
PORTS = {"headway": 18800, "envoy": 18801, "haproxy": 18802}
ADMIN_HEADWAY, ADMIN_ENVOY = 18890, 18891
PATHS = {
    "grpc": ("h2c client → h2c upstream (the gRPC path)", b"backend HTTP/2.0\n"),
    "tls": ("h2 over TLS at the listener → HTTP/1.1 upstream", b"backend HTTP/1.1\n"),
}


class Fail(RuntimeError):
    """A run that cannot be measured."""


# ---------------------------------------------------------------------------------------------
# the peers' confs


def headway_conf(d: Path, path: str, cert: Path, key: Path) -> list[str]:
    listen = f'"127.0.0.1:{PORTS["headway"]}"'
    if path == "tls":
        listen = f'{{ address: {listen}, tls: {{ cert: "{cert}", key: "{key}" }} }}'
    grpc = path == "grpc"
    lines = [
        "version: 1",
        "threads: 1",
        f"pid_file: {d}/headway.pid",
        f"upgrade_sock: {d}/headway_upgrade.sock",
        "grace_period_seconds: 1",
        "graceful_shutdown_timeout_seconds: 1",
        "gateway:",
        f"  listen: [{listen}]",
        *(["  h2c: true"] if grpc else []),
        f'  admin: {{ listen: "127.0.0.1:{ADMIN_HEADWAY}" }}',
        "  drain_time: 0s",
        "  access_log: { enabled: false }",
        "  routes:",
        "    - { prefix: /, cluster: backend }",
        "  clusters:",
        "    - name: backend",
        f"      address: {BACKEND_IP}",
        f"      port: {BACKEND_H2C if grpc else BACKEND_H1}",
        *(["      protocol: http2"] if grpc else []),
        "      connect_timeout: 1s",
        "      outlier_detection: { consecutive_failures: 0 }",
    ]
    conf = d / "headway.yaml"
    conf.write_text("\n".join(lines) + "\n")
    return ["-c", str(conf)]


def envoy_conf(d: Path, path: str, cert: Path, key: Path) -> list[str]:
    grpc = path == "grpc"
    tls = "" if grpc else f"""
          transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              common_tls_context:
                alpn_protocols: ["h2", "http/1.1"]
                tls_certificates:
                  - certificate_chain: {{ filename: "{cert}" }}
                    private_key: {{ filename: "{key}" }}"""
    upstream = "http2_protocol_options: {}" if grpc else "http_protocol_options: {}"
    text = f"""admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {ADMIN_ENVOY} }} }}
static_resources:
  listeners:
    - name: in
      address: {{ socket_address: {{ address: 127.0.0.1, port_value: {PORTS["envoy"]} }} }}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: ingress
                codec_type: AUTO
                route_config:
                  name: local
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                        - match: {{ prefix: "/" }}
                          route: {{ cluster: backend }}
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router{tls}
  clusters:
    - name: backend
      type: STATIC
      connect_timeout: 1s
      load_assignment:
        cluster_name: backend
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {{ address: {BACKEND_IP}, port_value: {BACKEND_H2C if grpc else BACKEND_H1} }}
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            {upstream}
"""
    conf = d / "envoy.yaml"
    conf.write_text(text)
    return ["-c", str(conf), "--concurrency", "1", "--disable-hot-restart", "--log-level", "warn"]


def haproxy_conf(d: Path, path: str, cert: Path, key: Path) -> list[str]:
    grpc = path == "grpc"
    pem = d / "gateway.pem"
    if not grpc:
        pem.write_text(cert.read_text() + key.read_text())
    bind = (f"bind 127.0.0.1:{PORTS['haproxy']} proto h2" if grpc
            else f"bind 127.0.0.1:{PORTS['haproxy']} ssl crt {pem} alpn h2,http/1.1")
    server = (f"server pod {BACKEND_IP}:{BACKEND_H2C} proto h2" if grpc
              else f"server pod {BACKEND_IP}:{BACKEND_H1}")
    text = f"""global
    nbthread 1
    maxconn 4096
    pidfile {d}/haproxy.pid

defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    option http-keep-alive
    http-reuse always

frontend in
    {bind}
    default_backend pods

backend pods
    {server}
"""
    conf = d / "haproxy.cfg"
    conf.write_text(text)
    return ["-db", "-f", str(conf)]


# ---------------------------------------------------------------------------------------------
# a run


def url(path: str, peer: str) -> str:
    return f"{'https' if path == 'tls' else 'http'}://127.0.0.1:{PORTS[peer]}/"


def check(path: str, peer: str) -> None:
    """One request by curl: HTTP/2 at the proxy, the answer of the nginx port meant."""
    cmd = ["curl", "-s", "--max-time", "10", "-w", "\\n%{http_code} %{http_version}",
           *(["-k", "--http2"] if path == "tls" else ["--http2-prior-knowledge"]), url(path, peer)]
    p = subprocess.run(cmd, capture_output=True, timeout=30)
    want = PATHS[path][1] + b"\n200 2"
    if p.stdout != want:
        raise Fail(f"{' '.join(cmd)}: {p.stdout[:300]!r} {p.stderr[:300]!r} (expected {want!r})")


def h2load(path: str, peer: str, n: int, args) -> dict:
    cmd = ["h2load", "-n", str(n), "-c", str(args.connections), "-m", str(args.streams),
           "-t", "1", url(path, peer)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.run_timeout)
    except subprocess.TimeoutExpired as e:
        raise Fail(f"{' '.join(cmd)}: not done within {args.run_timeout:.0f} s") from e
    out = p.stdout
    done = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    rps = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    if (p.returncode != 0 or not done or int(done.group(2)) != n or not codes
            or int(codes.group(1)) != n or not rps or not proto
            or not proto.group(1).startswith("h2")):
        raise Fail(f"{' '.join(cmd)} (exit {p.returncode}): expected {n} 2xx over h2:\n"
                   f"{out[-1500:]}{p.stderr[-500:]}")
    return {"rps": float(rps.group(3)), "protocol": proto.group(1), "command": " ".join(cmd)}


def run_one(args, path: str, peer: str, rnd: int, out: Path, keys: tuple[Path, Path]) -> dict:
    d = out / "runs" / f"{path}-{peer}-r{rnd}"
    d.mkdir(parents=True, exist_ok=True)
    admin = {"headway": [ADMIN_HEADWAY], "envoy": [ADMIN_ENVOY]}.get(peer, [])
    for port in [PORTS[peer], *admin]:
        if not port_free("127.0.0.1", port):
            raise Fail(f"127.0.0.1:{port} is in use: is another h2 bench running?")
    conf = {"headway": headway_conf, "envoy": envoy_conf, "haproxy": haproxy_conf}[peer]
    binary = {"headway": str(args.headway_bin), "envoy": str(args.envoy_bin),
              "haproxy": "haproxy"}[peer]
    proc = Proc(peer, [binary, *conf(d, path, *keys)], d / "proxy.log",
                env={"RUST_LOG": "warn"}, stop_signal=signal.SIGTERM)
    try:
        if not wait_until(lambda: not proc.alive() or not port_free("127.0.0.1", PORTS[peer]),
                          30) or not proc.alive():
            raise Fail(f"{peer} did not listen:\n{proc.tail()}")
        h2 = ["-k", "--http2"] if path == "tls" else ["--http2-prior-knowledge"]
        wait_until(lambda: subprocess.run(
            ["curl", "-s", "-o", "/dev/null", *h2, "--max-time", "2", url(path, peer)],
            capture_output=True).returncode == 0, 20)
        check(path, peer)
        h2load(path, peer, args.warmup, args)
        pids = proc.pids()
        cpu0 = cpu_seconds(pids)
        res = h2load(path, peer, args.requests, args)
        cpu = cpu_seconds(pids) - cpu0
        if not proc.alive():
            raise Fail(f"{peer} died during the run:\n{proc.tail()}")
    finally:
        proc.stop()
    res.update(path=path, peer=peer, round=rnd, cpu_us=cpu * 1e6 / args.requests)
    log(f"round {rnd} {path} {peer}: {res['rps']:,.0f} req/s, {res['cpu_us']:.1f} µs CPU/req")
    return res


def report(info: dict, runs: list[dict]) -> str:
    md = [f"# HTTP/2 side by side ({info['date']})\n",
          f"h2load -c {info['connections']} -m {info['streams']} -t 1, {info['requests']:,} "
          f"requests a run after {info['warmup']:,} of warm-up, each proxy one worker, nginx "
          f"({info['backend_workers']} worker(s)) behind; {info['rounds']} rounds, medians "
          f"(min – max). CPU: the proxy's utime + stime per request. Command: "
          f"`{info['command']}`; commit {info['commit']}. {info['cpu']}, {info['cores']} cores.\n",
          "| path | " + " | ".join(info["peers"]) + " |",
          "|---|" + "---:|" * len(info["peers"])]
    for path in info["paths"]:
        cells = []
        for peer in info["peers"]:
            rs = [r for r in runs if r["path"] == path and r["peer"] == peer]
            if not rs:
                cells.append("–")
                continue
            rps = [r["rps"] for r in rs]
            cpu = [r["cpu_us"] for r in rs]
            cells.append(f"{statistics.median(rps):,.0f} req/s ({statistics.median(cpu):.1f} µs)"
                         f" [{min(rps):,.0f} – {max(rps):,.0f}]")
        md.append(f"| {PATHS[path][0]} | " + " | ".join(cells) + " |")
    md.append("")
    return "\n".join(md)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    ap.add_argument("--headway-bin", type=Path, default=target / "release/headway")
    ap.add_argument("--envoy-bin", default=os.environ.get("ENVOY_BIN") or shutil.which("envoy"))
    ap.add_argument("--peers", default="headway,envoy,haproxy")
    ap.add_argument("--paths", default="grpc,tls")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=100_000, help="per run (100,000)")
    ap.add_argument("--warmup", type=int, default=5_000, help="before each run (5,000)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--streams", type=int, default=10, help="h2load -m (10)")
    ap.add_argument("--backend-workers", type=int, default=1)
    ap.add_argument("--run-timeout", type=float, default=120, help="seconds per h2load run")
    ap.add_argument("--smoke", action="store_true", help="1 round of 5,000 requests")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.smoke:
        args.rounds, args.requests, args.warmup = 1, 5_000, 500
    peers = [p for p in args.peers.split(",") if p]
    paths = [p for p in args.paths.split(",") if p]
    for p in peers:
        if p not in PORTS:
            ap.error(f"unknown peer {p!r}")
    for p in paths:
        if p not in PATHS:
            ap.error(f"unknown path {p!r}")
    if "envoy" in peers and not args.envoy_bin:
        ap.error("envoy not found: put it on PATH or pass --envoy-bin")
    for tool in ("h2load", "curl", "openssl", "nginx", *(["haproxy"] if "haproxy" in peers
                                                         else [])):
        if not shutil.which(tool):
            raise SystemExit(f"h2 bench: {tool} not found (bench/h2.sh installs it)")
    out = args.out or BENCH / "results" / f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-h2"
    out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    info = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": os.environ.get("BENCH_COMMAND", "bench/h2.sh"), "commit": commit,
            "cpu": cpu_model(), "cores": os.cpu_count(), "peers": peers, "paths": paths,
            "rounds": args.rounds, "requests": args.requests, "warmup": args.warmup,
            "connections": args.connections, "streams": args.streams,
            "backend_workers": args.backend_workers,
            "versions": {"h2load": tool_version(["h2load", "--version"]),
                         "nginx": tool_version(["nginx", "-v"]),
                         **({"envoy": tool_version([args.envoy_bin, "--version"])}
                            if "envoy" in peers else {}),
                         **({"haproxy": tool_version(["haproxy", "-v"])}
                            if "haproxy" in peers else {})}}
    keys = Path(tempfile.mkdtemp(prefix="headway-h2-bench-"))
    runs: list[dict] = []
    backend = None
    try:
        cert, key = keys / "cert.pem", keys / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=h2.bench", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True, timeout=60)
        backend = Backend(out, BACKEND_IP, BACKEND_H1, BACKEND_H2C, args.backend_workers, None)
        for rnd in range(1, args.rounds + 1):
            for path in paths:
                for peer in peers:
                    runs.append(run_one(args, path, peer, rnd, out, (cert, key)))
    finally:
        if backend:
            backend.stop()
        shutil.rmtree(keys, ignore_errors=True)
    text = report(info, runs)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps({"info": info, "runs": runs}, indent=2) + "\n")
    print()
    print(text)
    log(f"written: {out}/results.md, results.json")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Fail as e:
        print(f"\nh2 bench FAILED: {e}", file=sys.stderr)
        sys.exit(1)
