"""Discovery at scale (issue 25), driven by bench/dns_scale.sh; see bench/README.md.

N services as a platform team has them: each a headless-service name answering 3 pods (stock
nginx), one path-prefix route each, `dns_refresh_rate: 5s` and an HTTP health check every 5 s,
one worker. headway and Envoy 1.40 (STRICT_DNS, c-ares, the same DNS server and pods), each in
turn, for each N:

  ready     seconds from the process's start until the last route serves (a 200)
  rss       RSS once ready and settled (MB)
  idle cpu  CPU of the idle gateway over the window, % of one core
  dns q/s   queries the DNS server got per second over the window, and the most it got within
            one 10 ms (a stampede shows as a peak near the number of names)

The 3 pods of every service are the same 3 nginx addresses (127.4.0.1-3): names and clusters
are distinct, as are their lookups, probes and backend tables. Envoy probes idle clusters every
5 s too (`no_traffic_interval: 5s`; its default, 60 s, would probe an idle gateway 12 times less).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BENCH, REPO, Proc, cpu_seconds, http_get, log, mem_kb, port_free, wait_until,
)

PROXY = ("127.0.0.1", 18300)
ADMIN = ("127.0.0.1", 18390)
PODS = ["127.4.0.1", "127.4.0.2", "127.4.0.3"]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")


def pods(d: Path, port: int) -> Proc:
    d.mkdir(parents=True, exist_ok=True)
    listens = "\n".join(f"        listen {ip}:{port};" for ip in PODS)
    (d / "nginx.conf").write_text(f"""worker_processes 1;
pid {d}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
    uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    server {{
{listens}
        location / {{ return 200 "pod\\n"; }}
    }}
}}
""")
    proc = Proc("pods", ["nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-e", "stderr",
                         "-g", "daemon off;"], d / "nginx.log", stop_signal=signal.SIGTERM)
    if not wait_until(lambda: http_get(PODS[2], port)[0] == 200, 10):
        proc.stop()
        raise RuntimeError("pods did not answer:\n" + proc.tail())
    return proc


def dns(d: Path, args, n: int) -> tuple[Proc, Path]:
    zone = d / "zone"
    zone.write_text("".join(f"svc-{i}.bench={','.join(PODS)}\n" for i in range(n)))
    stats = d / "dns-stats"
    stats.unlink(missing_ok=True)
    proc = Proc("headless-dns", [str(args.dns_bin), "--listen", f"127.0.0.1:{args.dns_port}",
                                 "--ttl", "5", "--zone-file", str(zone), "--stats-file",
                                 str(stats)], d / "dns.log")
    if not wait_until(lambda: stats.exists(), 10):
        proc.stop()
        raise RuntimeError("headless-dns did not start:\n" + proc.tail())
    return proc, stats


def headway_conf(d: Path, args, n: int) -> list[str]:
    lines = [
        "version: 1", "threads: 1", f"pid_file: {d}/headway.pid",
        f"upgrade_sock: {d}/upgrade.sock", "grace_period_seconds: 1",
        "graceful_shutdown_timeout_seconds: 1", "gateway:",
        f'  listen: ["{PROXY[0]}:{PROXY[1]}"]', f'  admin: {{ listen: "{ADMIN[0]}:{ADMIN[1]}" }}',
        f'  resolver: {{ nameservers: ["127.0.0.1:{args.dns_port}"] }}',
        "  access_log: { enabled: false }", "  routes:",
    ]
    lines += [f"    - {{ prefix: /svc-{i}/, cluster: svc-{i} }}" for i in range(n)]
    lines.append("  clusters:")
    for i in range(n):
        lines += [
            f"    - name: svc-{i}", f"      address: svc-{i}.bench.", f"      port: {args.pod_port}",
            "      dns_refresh_rate: 5s", "      dns_lookup_family: v4_only",
            "      health_check: { type: http, path: /healthz, interval: 5s, timeout: 1s }",
        ]
    conf = d / "headway.yaml"
    conf.write_text("\n".join(lines) + "\n")
    return [str(args.headway_bin), "-c", str(conf)]


def envoy_conf(d: Path, args, n: int) -> list[str]:
    routes = "".join(
        f"                - match: {{ prefix: /svc-{i}/ }}\n"
        f"                  route: {{ cluster: svc-{i} }}\n" for i in range(n))
    clusters = "".join(f"""  - name: svc-{i}
    type: STRICT_DNS
    connect_timeout: 1s
    dns_lookup_family: V4_ONLY
    dns_refresh_rate: 5s
    typed_dns_resolver_config:
      name: envoy.network.dns_resolver.cares
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig
        resolvers: [{{ socket_address: {{ address: 127.0.0.1, port_value: {args.dns_port} }} }}]
        dns_resolver_options: {{ no_default_search_domain: true }}
    health_checks:
      - timeout: 1s
        interval: 5s
        no_traffic_interval: 5s
        unhealthy_threshold: 2
        healthy_threshold: 1
        http_health_check: {{ path: /healthz }}
    load_assignment:
      cluster_name: svc-{i}
      endpoints:
        - lb_endpoints:
            - endpoint: {{ address: {{ socket_address: {{ address: svc-{i}.bench., port_value: {args.pod_port} }} }} }}
""" for i in range(n))
    conf = d / "envoy.yaml"
    conf.write_text(f"""admin:
  address: {{ socket_address: {{ address: {ADMIN[0]}, port_value: {ADMIN[1]} }} }}
static_resources:
  listeners:
  - name: ingress
    address: {{ socket_address: {{ address: {PROXY[0]}, port_value: {PROXY[1]} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{routes}          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters}""")
    return [args.envoy_bin, "-c", str(conf), "--concurrency", "1", "-l", "warn",
            "--base-id", str(int(time.time()) % 50000)]


def stats_lines(path: Path) -> list[tuple[int, int, int]]:
    """(unix seconds, queries so far, most queries in 10 ms that second) per line."""
    out = []
    for line in path.read_text().splitlines():
        f = line.split()
        if len(f) == 4:
            out.append((int(f[0]), int(f[1]), int(f[3])))
    return out


def run(peer: str, args, n: int, raw: Path) -> dict:
    d = raw / f"{peer}-{n}"
    d.mkdir(parents=True, exist_ok=True)
    if not wait_until(lambda: port_free(*PROXY) and port_free(*ADMIN), 10):
        raise RuntimeError(f"{PROXY} or {ADMIN} in use")
    dns_proc, stats = dns(d, args, n)
    argv = headway_conf(d, args, n) if peer == "headway" else envoy_conf(d, args, n)
    last = f"/svc-{n - 1}/x"
    started = time.monotonic()
    proc = Proc(peer, argv, d / f"{peer}.log", env={"RUST_LOG": "warn"},
                stop_signal=signal.SIGINT if peer == "headway" else signal.SIGTERM)
    try:
        ok = wait_until(lambda: http_get(*PROXY, last, timeout=1)[0] == 200, 120, 0.02)
        ready = time.monotonic() - started
        if not ok:
            raise RuntimeError(f"{peer} never served {last}:\n" + proc.tail())
        time.sleep(args.settle)
        rss = mem_kb(proc.pids(), "VmRSS")
        s0, c0 = stats_lines(stats), cpu_seconds(proc.pids())
        time.sleep(args.window)
        s1, c1 = stats_lines(stats), cpu_seconds(proc.pids())
        window = [line for line in s1 if line[0] > s0[-1][0]]
        queries = s1[-1][1] - s0[-1][1]
        secs = max(1, s1[-1][0] - s0[-1][0])
        res = {"peer": peer, "services": n, "ready_s": round(ready, 2),
               "rss_mb": round(rss / 1024, 1),
               "idle_cpu_pct": round(100 * (c1 - c0) / args.window, 2),
               "dns_qps": round(queries / secs, 1),
               "dns_peak_per_10ms": max((line[2] for line in window), default=0)}
        log(json.dumps(res))
        return res
    finally:
        proc.stop()
        dns_proc.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--services", default="100,1000", help="Ns to run, comma-separated")
    ap.add_argument("--peers", default="headway,envoy")
    ap.add_argument("--window", type=float, default=60, help="seconds of idle measured")
    ap.add_argument("--settle", type=float, default=10, help="seconds between ready and measuring")
    ap.add_argument("--dns-port", type=int, default=15392)
    ap.add_argument("--pod-port", type=int, default=18381)
    ap.add_argument("--results", default=str(BENCH / "results"))
    ap.add_argument("--headway-bin", default=str(TARGET / "release/headway"))
    ap.add_argument("--dns-bin", default=str(TARGET / "release/headless-dns"))
    ap.add_argument("--envoy-bin", default=shutil.which("envoy") or "envoy")
    ap.add_argument("--smoke", action="store_true", help="--window 5 --settle 2")
    args = ap.parse_args()
    if args.smoke:
        args.window, args.settle = 5, 2
    out = Path(args.results) / (time.strftime("%Y%m%d-%H%M%S") + "-dns-scale")
    raw = out / "raw"
    pod_proc = pods(raw / "pods", args.pod_port)
    results = []
    try:
        for n in [int(x) for x in args.services.split(",")]:
            for peer in args.peers.split(","):
                results.append(run(peer, args, n, raw))
    finally:
        pod_proc.stop()
    rows = ["| services | peer | ready (last route serves) | RSS | idle CPU | DNS queries/s | "
            "most queries in 10 ms |", "|---|---|---|---|---|---|---|"]
    rows += [f"| {r['services']} | {r['peer']} | {r['ready_s']} s | {r['rss_mb']} MB | "
             f"{r['idle_cpu_pct']}% | {r['dns_qps']} | {r['dns_peak_per_10ms']} |" for r in results]
    table = "\n".join(rows)
    (out / "dns-scale.md").write_text(table + "\n")
    (out / "dns-scale.json").write_text(json.dumps(results, indent=1))
    print(table)
    log(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
