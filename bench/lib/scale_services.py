"""A whole cluster behind one gateway (issue 25), driven by `bench/scale.sh services`; see
bench/README.md.

For each size (--sizes, default 10,100,1000 services, one prefix route each, plus 1,000
services with 10,000 routes: --routes-case) headway and Envoy run in turn with the conf shape of
k8s/: every service a headless-service name answering the same 3 nginx pods, `dns_refresh_rate:
5s`, an HTTP health check every 5 s, one worker. Measured, for each:

  ready      seconds from the process's start until the LAST route answers 200
  RSS        after the idle window
  idle CPU   % of one core over --window seconds of no traffic (refreshes and probes only)
  DNS        queries per second over that window, and their spread: the most queries seen in
             one 10 ms slot (1,000 clusters refreshing in the same instant show there), counted
             by a relay in front of the DNS server that timestamps each query
  CPU/req    CPU of the proxy / requests, wrk -t1 -c8 on the first route and on the last route,
             interleaved, --rounds rounds each, medians

Standard library only, plus the same tools as bench/scale.sh (nginx, wrk, envoy).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BENCH, REPO, Backend, Dns, Proc, cpu_seconds, http_get, log, mem_kb, port_free, wait_until,
)

PROXY = ("127.0.0.1", 18500)
ADMIN = ("127.0.0.1", 18590)
# Envoy's admin listener does not reuse an address in TIME_WAIT: not headway's admin port
ENVOY_ADMIN = ("127.0.0.1", 18591)
PODS = ["127.0.20.1", "127.0.20.2", "127.0.20.3"]


class Relay:
    """A UDP relay in front of the DNS server that notes when each query arrived."""

    def __init__(self, port: int, upstream: tuple[str, int]):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up.settimeout(0.2)
        self.upstream = upstream
        self.times: list[float] = []
        self.pending: dict[int, tuple[tuple, bytes]] = {}
        self.next_id = 0
        self.lock = threading.Lock()
        self.running = True
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._down, self._back)]
        for t in self.threads:
            t.start()

    def _down(self):
        while self.running:
            try:
                msg, client = self.sock.recvfrom(65535)
            except OSError:
                continue
            with self.lock:
                self.times.append(time.monotonic())
                self.next_id = (self.next_id + 1) % 65536
                qid = self.next_id
                self.pending[qid] = (client, msg[:2])
            self.up.sendto(qid.to_bytes(2, "big") + msg[2:], self.upstream)

    def _back(self):
        while self.running:
            try:
                msg, _ = self.up.recvfrom(65535)
            except OSError:
                continue
            with self.lock:
                entry = self.pending.pop(int.from_bytes(msg[:2], "big"), None)
            if entry:
                client, original = entry
                self.sock.sendto(original + msg[2:], client)

    def count_between(self, t0: float, t1: float) -> list[float]:
        with self.lock:
            return [t for t in self.times if t0 <= t < t1]

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join(1)
        self.sock.close()
        self.up.close()


def route_table(services: int, routes: int) -> list[tuple[str, str]]:
    """(prefix, cluster): one route a service, or `routes` spread over them; none shadows another."""
    if routes <= services:
        return [(f"/svc-{i:04}/", f"svc-{i:04}") for i in range(services)]
    return [(f"/svc-{j % services:04}/{j:05}/", f"svc-{j % services:04}") for j in range(routes)]


def headway_conf(d: Path, args, services: int, routes: list[tuple[str, str]]) -> Path:
    lines = [
        "# written by bench/lib/scale_services.py",
        "version: 1", "threads: 1", f"pid_file: {d}/headway.pid",
        f"upgrade_sock: {d}/headway_upgrade.sock", "grace_period_seconds: 1",
        "graceful_shutdown_timeout_seconds: 1", "gateway:",
        f'  listen: ["{PROXY[0]}:{PROXY[1]}"]', f'  admin: {{ listen: "{ADMIN[0]}:{ADMIN[1]}" }}',
        f'  resolver: {{ nameservers: ["127.0.0.1:{args.relay_port}"] }}',
        "  access_log: { enabled: false }", "  routes:",
    ]
    lines += [f"    - {{ prefix: {p}, cluster: {c} }}" for p, c in routes]
    lines.append("  clusters:")
    for i in range(services):
        lines += [f"    - name: svc-{i:04}", f"      address: svc-{i:04}.bench.",
                  f"      port: {args.backend_port}", "      dns_refresh_rate: 5s",
                  "      dns_lookup_family: v4_only",
                  "      health_check: { type: http, path: /, interval: 5s, timeout: 1s }"]
    conf = d / "headway.yaml"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def envoy_conf(d: Path, args, services: int, routes: list[tuple[str, str]]) -> Path:
    hcm = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    cares = "type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig"
    router = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    clusters = [{
        "name": f"svc-{i:04}", "type": "STRICT_DNS", "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN", "dns_lookup_family": "V4_ONLY", "dns_refresh_rate": "5s",
        "typed_dns_resolver_config": {"name": "envoy.network.dns_resolver.cares", "typed_config": {
            "@type": cares, "use_resolvers_as_fallback": False,
            "resolvers": [{"socket_address": {"address": "127.0.0.1",
                                              "port_value": args.relay_port}}],
            "dns_resolver_options": {"no_default_search_domain": True}}},
        "health_checks": [{"timeout": "1s", "interval": "5s", "unhealthy_threshold": 2,
                           "healthy_threshold": 1, "http_health_check": {"path": "/"}}],
        "load_assignment": {"cluster_name": f"svc-{i:04}", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {
                "address": f"svc-{i:04}.bench.", "port_value": args.backend_port}}}}]}]},
    } for i in range(services)]
    conf = {
        "admin": {"address": {"socket_address": {"address": ENVOY_ADMIN[0],
                                                 "port_value": ENVOY_ADMIN[1]}}},
        "static_resources": {"listeners": [{
            "name": "ingress",
            "address": {"socket_address": {"address": PROXY[0], "port_value": PROXY[1]}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {"@type": hcm, "stat_prefix": "ingress", "codec_type": "AUTO",
                                 "route_config": {"name": "local", "virtual_hosts": [{
                                     "name": "all", "domains": ["*"],
                                     "routes": [{"match": {"prefix": p}, "route": {"cluster": c}}
                                                for p, c in routes]}]},
                                 "http_filters": [{"name": "envoy.filters.http.router",
                                                   "typed_config": {"@type": router}}]}}]}]}],
            "clusters": clusters}}
    path = d / "envoy.json"
    path.write_text(json.dumps(conf))
    return path


def start(peer: str, d: Path, args, services: int, routes) -> tuple[Proc, float]:
    """Starts the peer; returns it and the seconds until the last route answered 200."""
    admin = ADMIN if peer == "headway" else ENVOY_ADMIN
    if not wait_until(lambda: port_free(*PROXY) and port_free(*admin), 10):
        raise RuntimeError(f"{PROXY} or {admin} in use")
    if peer == "headway":
        argv = [str(args.headway_bin), "-c", str(headway_conf(d, args, services, routes))]
        env, stop = {"RUST_LOG": "warn"}, signal.SIGINT
    else:
        argv = [args.envoy_bin, "-c", str(envoy_conf(d, args, services, routes)),
                "--concurrency", "1", "--disable-hot-restart", "--log-level", "warn"]
        env, stop = None, signal.SIGTERM
    t0 = time.monotonic()
    proc = Proc(peer, argv, d / f"{peer}.log", env=env, stop_signal=stop)
    last = routes[-1][0] + "x"
    ok = wait_until(lambda: proc.alive() and http_get(*PROXY, last, timeout=1)[0] == 200,
                    args.start_timeout, 0.05)
    if not ok:
        proc.stop()
        raise RuntimeError(f"{peer}: the last route never answered 200:\n{proc.tail()}")
    return proc, time.monotonic() - t0


def wrk_cpu(proc: Proc, path: str, seconds: float, out: Path) -> dict:
    argv = ["wrk", "-t1", "-c8", f"-d{seconds:g}s", "-s", str(BENCH / "lib" / "report.lua"),
            f"http://{PROXY[0]}:{PROXY[1]}{path}"]
    c0 = cpu_seconds(proc.pids())
    res = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    c1 = cpu_seconds(proc.pids())
    out.write_text("$ " + " ".join(argv) + "\n" + res.stdout + res.stderr)
    line = next((x for x in res.stdout.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if res.returncode != 0 or line is None:
        raise RuntimeError(f"wrk on {path}: {res.stderr.strip()[:300]}")
    w = json.loads(line[len("BENCH_RESULT "):])
    errors = sum(w[k] for k in w if k.startswith("errors_"))
    return {"requests": w["requests"], "errors": errors,
            "cpu_us_per_request": (c1 - c0) * 1e6 / max(w["requests"], 1)}


def reload_one_route(proc: Proc, d: Path, routes, args) -> dict:
    """Item 7: the last route turned into a direct response, SIGHUP under wrk's load on the
    first route; seconds until the last route answers the new way, and wrk's errors."""
    conf = d / "headway.yaml"
    prefix, cluster = routes[-1]
    text = conf.read_text()
    old = f"    - {{ prefix: {prefix}, cluster: {cluster} }}"
    conf.write_text(text.replace(
        old, f"    - {{ prefix: {prefix}, direct_response: {{ status: 200, body: moved }} }}"))
    argv = ["wrk", "-t1", "-c8", f"-d{args.duration:g}s", "-s", str(BENCH / "lib" / "report.lua"),
            f"http://{PROXY[0]}:{PROXY[1]}{routes[0][0]}x"]
    load = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGHUP)
    moved = wait_until(lambda: http_get(*PROXY, prefix + "x", timeout=1)[1] == "moved", 30, 0.01)
    applied = time.monotonic() - t0
    out, _ = load.communicate(timeout=args.duration + 60)
    (d / "wrk-reload.txt").write_text("$ " + " ".join(argv) + "\n" + out)
    line = next((x for x in out.splitlines() if x.startswith("BENCH_RESULT ")), "BENCH_RESULT {}")
    w = json.loads(line[len("BENCH_RESULT "):])
    return {"reload_applied_s": round(applied, 3) if moved else None,
            "reload_load_requests": w.get("requests"),
            "reload_load_errors": sum(v for k, v in w.items() if k.startswith("errors_"))}


def measure(peer: str, args, relay: Relay, raw: Path, services: int, routes_n: int) -> dict:
    d = raw / f"{peer}-{services}-{routes_n}"
    d.mkdir(parents=True, exist_ok=True)
    routes = route_table(services, routes_n)
    proc, ready = start(peer, d, args, services, routes)
    try:
        res = {"peer": peer, "services": services, "routes": len(routes),
               "ready_s": round(ready, 2)}
        time.sleep(args.settle)
        t0, c0 = time.monotonic(), cpu_seconds(proc.pids())
        time.sleep(args.window)
        t1, c1 = time.monotonic(), cpu_seconds(proc.pids())
        res["idle_cpu_pct"] = round((c1 - c0) / (t1 - t0) * 100, 2)
        res["rss_mb"] = round(mem_kb(proc.pids(), "VmRSS") / 1024, 1)
        times = relay.count_between(t0, t1)
        res["dns_qps"] = round(len(times) / (t1 - t0), 1)
        slots: dict[int, int] = {}
        for t in times:
            slots[int((t - t0) * 100)] = slots.get(int((t - t0) * 100), 0) + 1
        res["dns_max_per_10ms"] = max(slots.values(), default=0)
        per_s = [sum(1 for t in times if int(t - t0) == s) for s in range(int(t1 - t0))]
        res["dns_qps_stdev"] = round(statistics.pstdev(per_s), 1) if per_s else None
        runs: dict[str, list] = {"first": [], "last": []}
        for r in range(args.rounds):
            for which, (prefix, _) in (("first", routes[0]), ("last", routes[-1])):
                runs[which].append(wrk_cpu(proc, prefix + "x", args.duration,
                                           d / f"wrk-{which}-r{r}.txt"))
        for which, rs in runs.items():
            res[f"{which}_cpu_us"] = round(statistics.median(x["cpu_us_per_request"]
                                                             for x in rs), 1)
            res[f"{which}_errors"] = sum(x["errors"] for x in rs)
        if peer == "headway" and args.reload:
            res.update(reload_one_route(proc, d, routes, args))
        res["alive"] = proc.alive()
        return res
    finally:
        proc.stop()


def report(out: Path, args, results: list[dict], wall: float) -> str:
    L = ["# SMOKE RUN — not results" if args.smoke else "# A whole cluster behind one gateway",
         "", f"- date: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}; {os.cpu_count()} cores; load "
         f"average at start {', '.join(f'{x:.2f}' for x in args.loadavg)}; wall "
         f"{wall / 60:.1f} min", f"- command: `{args.command_line}`",
         f"- every service: a name answering 3 nginx pods, `dns_refresh_rate: 5s`, an HTTP "
         f"health check every 5 s; one worker; idle window {args.window:g} s; CPU per request: "
         f"wrk -t1 -c8 {args.duration:g} s, {args.rounds} round(s), medians", "",
         "| services / routes | peer | ready (last route serves) | RSS | idle CPU | DNS queries/s "
         "(most in 10 ms) | CPU per request, first / last route |",
         "|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        label = f"{r['services']:,} / {r['routes']:,}"
        if "error" in r:
            L.append(f"| {label} | {r['peer']} | FAILED: {r['error'].splitlines()[0]} | | | | |")
            continue
        errs = r["first_errors"] + r["last_errors"]
        L.append(f"| {label} | {r['peer']} | {r['ready_s']:.2f} s | {r['rss_mb']:.0f} MB | "
                 f"{r['idle_cpu_pct']:.1f}% | {r['dns_qps']:.0f} ({r['dns_max_per_10ms']}) | "
                 f"{r['first_cpu_us']:.1f} / {r['last_cpu_us']:.1f} µs"
                 f"{f' ({errs} errors)' if errs else ''} |")
    reloads = [r for r in results if r.get("reload_load_requests") is not None]
    if reloads:
        L += ["", "Reload at size (headway): the last route changed to a direct response, SIGHUP "
              "under wrk on the first route; time until the last route answers the new way:", "",
              "| services / routes | applied in | requests during it (failed) |", "|---|---:|---:|"]
        for r in reloads:
            applied = r["reload_applied_s"]
            L.append(f"| {r['services']:,} / {r['routes']:,} | "
                     f"{'never' if applied is None else f'{applied * 1000:.0f} ms'} | "
                     f"{r['reload_load_requests']:,} ({r['reload_load_errors']}) |")
    text = "\n".join(L) + "\n"
    (out / "scale-services.md").write_text(text)
    (out / "scale-services.json").write_text(json.dumps(
        {"settings": vars(args), "results": results, "wall_seconds": round(wall, 1)},
        indent=2, default=str))
    return text


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # stop what we started, as on Ctrl-C
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="10,100,1000", help="services, one route each")
    ap.add_argument("--routes-case", default="1000x10000",
                    help="SERVICESxROUTES run after the sizes ('' for none)")
    ap.add_argument("--peers", default="headway,envoy")
    ap.add_argument("--window", type=float, default=60, help="seconds of idling measured")
    ap.add_argument("--settle", type=float, default=5, help="seconds after ready, before it")
    ap.add_argument("--duration", type=float, default=5, help="seconds of each wrk run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--start-timeout", type=float, default=120)
    ap.add_argument("--no-reload", dest="reload", action="store_false",
                    help="skip the reload of one route at each size (headway)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--dns-port", type=int, default=15400)
    ap.add_argument("--relay-port", type=int, default=15401)
    ap.add_argument("--backend-port", type=int, default=18581)
    ap.add_argument("--results", default=str(BENCH / "results"))
    ap.add_argument("--headway-bin", default=str(REPO / "target/release/headway"))
    ap.add_argument("--dns-bin", default=str(REPO / "target/release/headless-dns"))
    ap.add_argument("--envoy-bin", default=os.environ.get("ENVOY_BIN") or "envoy")
    args = ap.parse_args()
    if args.smoke:
        args.window, args.settle, args.duration, args.rounds = 5, 1, 2, 1
    args.command_line = os.environ.get("BENCH_COMMAND") or " ".join(
        ["bench/lib/scale_services.py", *sys.argv[1:]])
    args.loadavg = os.getloadavg()
    cases = [(int(s), int(s)) for s in args.sizes.split(",") if s]
    if args.routes_case:
        s, r = args.routes_case.split("x")
        cases.append((int(s), int(r)))
    peers = [p for p in args.peers.split(",") if p]
    out = Path(args.results) / (time.strftime("%Y%m%d-%H%M%S") + "-scale-services"
                                + ("-smoke" if args.smoke else ""))
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    log(f"results in {out}; cases {cases}; peers {peers}")
    most = max(s for s, _ in cases)
    records = {f"svc-{i:04}.bench": PODS for i in range(most)}
    pods = [Backend(raw / f"pod{k}", ip, args.backend_port, args.backend_port + 1 + k, 1, None)
            for k, ip in enumerate(PODS)]
    dns = Dns(raw, Path(args.dns_bin), "127.0.0.1", args.dns_port, records, None)
    relay = Relay(args.relay_port, ("127.0.0.1", args.dns_port))
    results = []
    t0 = time.monotonic()
    try:
        for services, routes in cases:
            for peer in peers:
                log(f"{peer}: {services} services, {routes} routes")
                try:
                    results.append(measure(peer, args, relay, raw, services, routes))
                except Exception as e:  # noqa: BLE001 - reported; the other cases still run
                    results.append({"peer": peer, "services": services, "routes": routes,
                                    "error": f"{type(e).__name__}: {e}"})
                log(f"  {json.dumps(results[-1])[:400]}")
    finally:
        relay.stop()
        dns.stop()
        for p in pods:
            p.stop()
    text = report(out, args, results, time.monotonic() - t0)
    print()
    print(text)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
