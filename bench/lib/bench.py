"""The side-by-side benchmark: headway, Envoy, HAProxy and nginx on the same job, plus the
direct-to-backend ceiling. Driven by bench/run.sh (which installs the peers and builds headway);
see bench/README.md.

For every round, for every case, for every peer (A B C D A B C D ...): start the proxy afresh,
check that a request through it reaches the backend over the expected protocol, warm up, then
run wrk while reading the proxy's CPU time and memory from /proc. Medians over rounds go in
results.md and results.json; every run's raw output stays under raw/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BENCH, REPO, Backend, Dns, Proc, cpu_model, cpu_seconds, get_json, http_get, log, mem_kb,
    port_free,
    render, tool_version, wait_until,
)

CASES = {
    "keepalive": {
        "title": "keep-alive HTTP/1.1",
        "headers": [],
        "upstream": "h1",
    },
    "close": {
        "title": "new connection per request (client sends Connection: close)",
        "headers": ["Connection: close"],
        "upstream": "h1",
    },
    "h2c": {
        "title": "h2c upstream (client: keep-alive HTTP/1.1; proxy to backend: HTTP/2 cleartext)",
        "headers": [],
        "upstream": "h2c",
    },
    # One request at a time: no queueing, so p50 minus the direct run's p50 is what the proxy
    # adds to a request (at 64 connections the proxies are saturated and p50 is mostly queue).
    "latency": {
        "title": "latency: one keep-alive connection, one request at a time",
        "headers": [],
        "upstream": "h1",
        "connections": 1,
    },
}

EXPECTED_BODY = {"h1": "backend HTTP/1.1", "h2c": "backend HTTP/2.0"}

# Targets of issue 8 (on this 2-core machine, same run, medians), and its reference figures.
ISSUE_REFERENCE = [
    ("direct", "142k req/s", "", "", ""),
    ("HAProxy 2.6", "64k req/s", "2.2 ms", "15 µs", "16 MB"),
    ("Envoy 1.40", "32k req/s", "3.2 ms", "31 µs", "69 MB"),
]


# ---------------------------------------------------------------------------------------------
# peers


class Peer:
    name = "?"
    label = "?"

    def __init__(self, ctx: "Ctx", port: int):
        self.ctx = ctx
        self.ip = "127.0.0.1"
        self.port = port

    def not_applicable(self, case: str) -> str | None:
        return None

    def target(self, case: str) -> tuple[str, int]:
        return self.ip, self.port

    def upstream_port(self, case: str) -> int:
        b = self.ctx.backend
        return b.port_h2c if CASES[case]["upstream"] == "h2c" else b.port_h1

    def start(self, case: str, d: Path) -> Proc | None:
        raise NotImplementedError

    def snapshot(self, d: Path) -> None:
        """Evidence that the backend came from DNS (the proxy's own view of its cluster)."""


class Direct(Peer):
    name, label = "direct", "direct (no proxy: the ceiling)"

    def not_applicable(self, case):
        if CASES[case]["upstream"] == "h2c":
            return "wrk speaks HTTP/1.1 only: the ceiling is the keep-alive direct run"
        return None

    def target(self, case):
        return self.ctx.backend.ip, self.ctx.backend.port_h1

    def start(self, case, d):
        return None


class Headway(Peer):
    name, label = "headway", "headway (pingora)"

    def start(self, case, d):
        conf = render("headway.yaml", d / "headway.yaml", DIR=d,
                      PROXY_LISTEN=f"{self.ip}:{self.port}",
                      ADMIN_LISTEN=f"127.0.0.1:{self.ctx.args.admin_port_base}",
                      DNS_ADDR=self.ctx.dns_addr, DNS_NAME=self.ctx.args.dns_name,
                      UPSTREAM_PORT=self.upstream_port(case),
                      HEADWAY_PROTOCOL="http2" if CASES[case]["upstream"] == "h2c" else "http1")
        return Proc("headway", [str(self.ctx.headway_bin), "-c", str(conf)], d / "proxy.log",
                    cpus=self.ctx.proxy_cpus, env={"RUST_LOG": "warn"},
                    stop_signal=signal.SIGINT)

    def snapshot(self, d):
        data = get_json("127.0.0.1", self.ctx.args.admin_port_base, "/clusters")
        (d / "clusters.json").write_text(json.dumps(data, indent=2))


class PingoraFloor(Peer):
    name, label = "pingora", "pingora floor (bare ProxyHttp, fixed upstream; no DNS)"

    def not_applicable(self, case):
        if CASES[case]["upstream"] == "h2c":
            return "examples/pingora_floor.rs speaks HTTP/1.1 upstream only"
        return None

    def start(self, case, d):
        # The framework headway is built on, with nothing of headway's: what headway costs
        # beyond it is its own request path (routing, selection, limits, headers, metrics).
        argv = [str(self.ctx.floor_bin), f"{self.ip}:{self.port}",
                f"{self.ctx.backend.ip}:{self.upstream_port(case)}", "1"]
        return Proc("pingora_floor", argv, d / "proxy.log", cpus=self.ctx.proxy_cpus,
                    env={"RUST_LOG": "warn"}, stop_signal=signal.SIGINT)


class Envoy(Peer):
    name, label = "envoy", "Envoy"

    def start(self, case, d):
        if CASES[case]["upstream"] == "h2c":
            http_config = "http2_protocol_options: {}"
        else:
            http_config = "http_protocol_options: {}"
        options = (
            "      typed_extension_protocol_options:\n"
            "        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n"
            '          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n'
            "          explicit_http_config:\n"
            f"            {http_config}"
        )
        dns_ip, dns_port = self.ctx.dns_addr.split(":")
        conf = render("envoy.yaml", d / "envoy.yaml", ADMIN_PORT=self.ctx.args.admin_port_base + 1,
                      PROXY_PORT=self.port, DNS_IP=dns_ip, DNS_PORT=dns_port,
                      DNS_NAME=self.ctx.args.dns_name, UPSTREAM_PORT=self.upstream_port(case),
                      ENVOY_PROTOCOL_OPTIONS=options)
        argv = [str(self.ctx.envoy_bin), "-c", str(conf), "--concurrency", "1",
                "--disable-hot-restart", "--log-level", "warn"]
        return Proc("envoy", argv, d / "proxy.log", cpus=self.ctx.proxy_cpus)

    def snapshot(self, d):
        status, body, _ = http_get("127.0.0.1", self.ctx.args.admin_port_base + 1, "/clusters")
        (d / "clusters.txt").write_text(body)


class HAProxy(Peer):
    name, label = "haproxy", "HAProxy"

    def start(self, case, d):
        proto = "proto h2" if CASES[case]["upstream"] == "h2c" else ""
        conf = render("haproxy.cfg", d / "haproxy.cfg", DIR=d, DNS_ADDR=self.ctx.dns_addr,
                      PROXY_LISTEN=f"{self.ip}:{self.port}", DNS_NAME=self.ctx.args.dns_name,
                      UPSTREAM_PORT=self.upstream_port(case), HAPROXY_PROTO=proto)
        return Proc("haproxy", ["haproxy", "-db", "-f", str(conf)], d / "proxy.log",
                    cpus=self.ctx.proxy_cpus)

    def snapshot(self, d):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(3)
            s.connect(str(d / "haproxy.sock"))
            s.sendall(b"show servers state backend\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        (d / "servers-state.txt").write_bytes(out)


class Nginx(Peer):
    name, label = "nginx", "nginx (static upstream, keep-alive)"
    template = "nginx-proxy.conf"

    def not_applicable(self, case):
        if CASES[case]["upstream"] == "h2c":
            return "nginx's proxy module speaks HTTP/1.x to upstreams only"
        return None

    def start(self, case, d):
        conf = render(self.template, d / "nginx.conf", DIR=d, PROXY_LISTEN=f"{self.ip}:{self.port}",
                      BACKEND_IP=self.ctx.backend.ip, UPSTREAM_PORT=self.upstream_port(case),
                      DNS_ADDR=self.ctx.dns_addr, DNS_NAME=self.ctx.args.dns_name)
        argv = ["nginx", "-p", str(d), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"]
        return Proc(self.name, argv, d / "proxy.log", cpus=self.ctx.proxy_cpus)


class NginxDns(Nginx):
    name, label = "nginx-dns", "nginx (resolver, re-resolves; no upstream keep-alive)"
    template = "nginx-dns-proxy.conf"


PEERS = {p.name: p for p in (Direct, Headway, Envoy, HAProxy, Nginx, NginxDns, PingoraFloor)}


# ---------------------------------------------------------------------------------------------
# a run


class Ctx:
    def __init__(self, args):
        self.args = args
        self.dns_addr = f"127.0.0.1:{args.dns_port}"
        self.headway_bin = Path(args.headway_bin)
        self.floor_bin = Path(args.floor_bin)
        self.envoy_bin = Path(args.envoy_bin) if args.envoy_bin else None
        self.pin = args.pin
        self.proxy_cpus = "1" if args.pin else None
        self.load_cpus = "0" if args.pin else None
        self.backend: Backend | None = None


def parse_wrk(stdout: str) -> dict:
    for line in stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    raise RuntimeError("wrk printed no BENCH_RESULT line")


def wrk(ctx: Ctx, case: str, host: str, port: int, duration: str, out: Path) -> dict:
    a = ctx.args
    connections = CASES[case].get("connections", a.connections)
    argv = ["wrk", f"-t{a.threads}", f"-c{connections}", f"-d{duration}", "--latency",
            "--timeout", "5s", "-s", str(BENCH / "lib" / "report.lua")]
    for h in CASES[case]["headers"]:
        argv += ["-H", h]
    argv.append(f"http://{host}:{port}/")
    if ctx.load_cpus:
        argv = ["taskset", "-c", ctx.load_cpus, *argv]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s(duration) + 60)
    out.write_text("$ " + " ".join(argv) + "\n" + res.stdout + res.stderr)
    if res.returncode != 0:
        raise RuntimeError(f"wrk exited {res.returncode}: {res.stderr.strip()[:300]}")
    return parse_wrk(res.stdout)


def duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for u in ("ms", "s", "m", "h"):
        if text.endswith(u):
            return float(text[: -len(u)]) * units[u]
    return float(text)


def route_check(host: str, port: int, expected: str) -> dict | None:
    status, body, headers = http_get(host, port, "/", timeout=2)
    if status == 200 and body.strip() == expected:
        return {"status": status, "body": body.strip(),
                "server": headers.get("Server") or headers.get("server")}
    return None


def start_perf(pids: list[int], d: Path) -> subprocess.Popen:
    """perf record of the proxy's processes for the measured run (it costs the proxy CPU: a
    profiled run's figures are marked and are not comparable)."""
    argv = ["perf", "record", "-F", "499", "--call-graph", "dwarf,16384", "-o",
            str(d / "perf.data"), "-p", ",".join(map(str, pids))]
    log_file = open(d / "perf.log", "wb")
    p = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    time.sleep(0.5)
    return p


def stop_perf(p: subprocess.Popen, d: Path) -> None:
    p.send_signal(signal.SIGINT)
    try:
        p.wait(60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    with open(d / "perf-report.txt", "w") as out:
        subprocess.run(["perf", "report", "-i", str(d / "perf.data"), "--stdio", "--no-children",
                        "--percent-limit", "0.5", "-g", "none", "-F", "overhead,dso,sym"],
                       stdout=out, stderr=subprocess.STDOUT, timeout=600)


def run_one(ctx: Ctx, peer: Peer, case: str, rnd: int, raw: Path) -> dict:
    rec = {"case": case, "peer": peer.name, "round": rnd}
    reason = peer.not_applicable(case)
    if reason:
        return {**rec, "status": "n/a", "reason": reason}
    d = raw / case / f"r{rnd}-{peer.name}"
    d.mkdir(parents=True, exist_ok=True)
    host, port = peer.target(case)
    if peer.name != "direct" and not wait_until(lambda: port_free(host, port), 10):
        return {**rec, "status": "failed", "reason": f"{host}:{port} still in use"}
    expected = EXPECTED_BODY[CASES[case]["upstream"]]
    proc = None
    try:
        proc = peer.start(case, d)
        t_start = time.monotonic()

        def ready():
            if proc and not proc.alive():
                return "exited"
            return route_check(host, port, expected)

        check = wait_until(ready, ctx.args.ready_timeout, 0.2)
        if check == "exited":
            rec.update(status="failed", reason=f"{peer.name} exited at start with code "
                       f"{proc.popen.returncode}\n{proc.tail()}")
            return rec
        if not check:
            try:
                got = http_get(host, port, "/", timeout=2)[:2]
            except OSError as e:
                got = repr(e)
            tail = proc.tail() if proc else ""
            rec.update(status="failed", reason=f"no 200 {expected!r} through {host}:{port} "
                       f"within {ctx.args.ready_timeout}s (last: {got})\n{tail}")
            return rec
        rec["route_check"] = {**check, "ready_after_s": round(time.monotonic() - t_start, 2)}
        try:
            peer.snapshot(d)
        except Exception as e:  # noqa: BLE001 - evidence only, never fatal
            rec["snapshot_error"] = repr(e)
        backend_pids = ctx.backend.pids()
        pids = proc.pids() if proc else []
        rec["idle_rss_kb"] = mem_kb(pids, "VmRSS") if proc else None
        if ctx.args.warmup and duration_s(ctx.args.warmup) > 0:
            wrk(ctx, case, host, port, ctx.args.warmup, d / "wrk-warmup.txt")
        pids = proc.pids() if proc else []
        perf = None
        if proc and peer.name in ctx.args.perf:
            perf = start_perf(pids, d)
            rec["profiled"] = True
        cpu0, bcpu0 = cpu_seconds(pids), cpu_seconds(backend_pids)
        try:
            w = wrk(ctx, case, host, port, ctx.args.duration, d / "wrk.txt")
        finally:
            cpu1, bcpu1 = cpu_seconds(pids), cpu_seconds(backend_pids)
            if perf:
                stop_perf(perf, d)
        if proc and not proc.alive():
            rec.update(status="failed", reason="proxy died during the run\n" + proc.tail())
            return rec
        rec["peak_rss_kb"] = mem_kb(pids, "VmHWM") if proc else None
        rec["end_rss_kb"] = mem_kb(pids, "VmRSS") if proc else None
        rec["processes"] = len(pids)
        rec["wrk"] = w
        n = w["requests"]
        rec["requests"] = n
        rec["rps"] = n / (w["duration_us"] / 1e6)
        rec["errors"] = sum(w[k] for k in ("errors_connect", "errors_read", "errors_write",
                                            "errors_status", "errors_timeout"))
        if proc:
            rec["proxy_cpu_s"] = round(cpu1 - cpu0, 3)
            rec["proxy_cpu_s_per_100k"] = (cpu1 - cpu0) / n * 1e5 if n else None
            rec["proxy_cpu_us_per_req"] = (cpu1 - cpu0) / n * 1e6 if n else None
        rec["backend_cpu_s"] = round(bcpu1 - bcpu0, 3)
        rec["backend_cpu_us_per_req"] = (bcpu1 - bcpu0) / n * 1e6 if n else None
        # the route still answers after the load (a proxy that broke under load shows here)
        rec["route_check_after"] = bool(route_check(host, port, expected))
        rec["status"] = "ok" if rec["route_check_after"] else "failed"
        if not rec["route_check_after"]:
            rec["reason"] = "route check failed after the load"
        return rec
    except Exception as e:  # noqa: BLE001 - one failed run must not end the others
        rec.update(status="failed", reason=f"{type(e).__name__}: {e}")
        return rec
    finally:
        if proc:
            rec["exit_code"] = proc.stop()
        (d / "run.json").write_text(json.dumps(rec, indent=2))


# ---------------------------------------------------------------------------------------------
# summary


METRICS = ["rps", "p50_us", "p99_us", "p999_us", "proxy_cpu_s_per_100k", "proxy_cpu_us_per_req",
           "peak_rss_kb", "idle_rss_kb", "backend_cpu_us_per_req"]


def medians(runs: list[dict]) -> dict:
    out: dict = {}
    for r in runs:
        key = (r["case"], r["peer"])
        out.setdefault(key, []).append(r)
    result = {}
    for (case, peer), rs in out.items():
        ok = [r for r in rs if r.get("status") == "ok"]
        entry = {"case": case, "peer": peer, "rounds": len(rs), "ok_rounds": len(ok)}
        if not ok:
            entry["status"] = rs[0].get("status")
            entry["reason"] = rs[0].get("reason", "")
        else:
            entry["status"] = "ok"
            for m in METRICS:
                vals = [r["wrk"][m] if m in r["wrk"] else r.get(m) for r in ok]
                vals = [v for v in vals if v is not None]
                entry[m] = statistics.median(vals) if vals else None
            entry["errors_total"] = sum(r.get("errors", 0) for r in ok)
            entry["requests_total"] = sum(r.get("requests", 0) for r in ok)
            entry["rps_all"] = [round(r["rps"]) for r in ok]
            entry["profiled"] = any(r.get("profiled") for r in ok)
        result[f"{case}/{peer}"] = entry
    return result


def fmt_ms(us):
    return "—" if us is None else f"{us / 1000:.2f}"


def fmt_mb(kb):
    return "—" if kb is None else f"{kb / 1024:.1f}"


def table(case: str, med: dict, peers: list[str]) -> list[str]:
    ceiling = None
    for key in (f"{case}/direct", "keepalive/direct"):  # h2c has no direct run of its own
        direct = med.get(key)
        if direct and direct.get("status") == "ok":
            ceiling = direct["rps"]
            break
    lines = [
        "| peer | req/s | of direct | p50 ms | p99 ms | p99.9 ms | proxy CPU s/100k req "
        "(µs/req) | peak RSS MB | idle RSS MB | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in peers:
        e = med.get(f"{case}/{p}")
        if not e:
            continue
        label = PEERS[p].label
        if e["status"] != "ok":
            why = e.get("reason", "").splitlines()[0] if e.get("reason") else ""
            lines.append(f"| {label} | {e['status']} | | | | | | | | {why} |")
            continue
        share = f"{e['rps'] / ceiling:.0%}" if ceiling else ""
        cpu = ("—" if e.get("proxy_cpu_s_per_100k") is None else
               f"{e['proxy_cpu_s_per_100k']:.2f} ({e['proxy_cpu_us_per_req']:.1f})")
        if e.get("profiled"):
            label += " (profiled with perf: not comparable)"
        lines.append(
            f"| {label} | {e['rps']:,.0f} | {share} | {fmt_ms(e['p50_us'])} | {fmt_ms(e['p99_us'])} "
            f"| {fmt_ms(e['p999_us'])} | {cpu} | {fmt_mb(e.get('peak_rss_kb'))} "
            f"| {fmt_mb(e.get('idle_rss_kb'))} | {e['errors_total']} |")
    return lines


def targets(med: dict) -> list[tuple[str, str, str]]:
    """Issue 8's targets that this run can judge: (target, measured, verdict)."""
    out = []
    hw = med.get("keepalive/headway")
    if not hw or hw.get("status") != "ok":
        return out
    peers = {p: med.get(f"keepalive/{p}") for p in ("haproxy", "envoy", "nginx", "nginx-dns")}
    peers = {p: e for p, e in peers.items() if e and e.get("status") == "ok"}

    def verdict(ok):
        return "met" if ok else "NOT met"

    if "haproxy" in peers:
        need = 1.1 * peers["haproxy"]["rps"]
        out.append(("keep-alive req/s ≥ 1.1 × HAProxy's", f"{hw['rps']:,.0f} vs {need:,.0f} needed",
                    verdict(hw["rps"] >= need)))
    if "envoy" in peers:
        need = 2 * peers["envoy"]["rps"]
        out.append(("keep-alive req/s ≥ 2 × Envoy's", f"{hw['rps']:,.0f} vs {need:,.0f} needed",
                    verdict(hw["rps"] >= need)))
    if peers:
        best = min(peers.items(), key=lambda kv: kv[1]["p99_us"])
        out.append(("p99 ≤ the best peer's", f"{fmt_ms(hw['p99_us'])} ms vs {best[0]} "
                    f"{fmt_ms(best[1]['p99_us'])} ms", verdict(hw["p99_us"] <= best[1]["p99_us"])))
    out.append(("proxy CPU ≤ 12 µs per request", f"{hw['proxy_cpu_us_per_req']:.1f} µs",
                verdict(hw["proxy_cpu_us_per_req"] <= 12)))
    lat_hw, lat_d = med.get("latency/headway"), med.get("latency/direct")
    if all(e and e.get("status") == "ok" for e in (lat_hw, lat_d)):
        add = lat_hw["p50_us"] - lat_d["p50_us"]
        out.append(("p50 adds < 100 µs over direct (latency case: one request at a time)",
                    f"+{add:.0f} µs ({fmt_ms(lat_hw['p50_us'])} vs {fmt_ms(lat_d['p50_us'])} ms)",
                    verdict(add < 100)))
    d = med.get("keepalive/direct")
    if d and d.get("status") == "ok":
        add = hw["p50_us"] - d["p50_us"]
        out.append(("p50 over direct at 64 connections (saturated: mostly queueing)",
                    f"+{add:.0f} µs", "for reference"))
    floor = med.get("keepalive/pingora")
    if floor and floor.get("status") == "ok":
        out.append(("(context) headway vs the bare pingora proxy it is built on",
                    f"{hw['rps'] / floor['rps']:.0%} of its req/s; "
                    f"{hw['proxy_cpu_us_per_req'] - floor['proxy_cpu_us_per_req']:+.1f} µs CPU per request",
                    "—"))
    out.append(("idle RSS < 20 MB", f"{fmt_mb(hw['idle_rss_kb'])} MB",
                verdict(hw["idle_rss_kb"] < 20 * 1024)))
    return out


def version(argv: list[str], pattern: str) -> str:
    text = tool_version(argv)
    m = re.search(pattern, text)
    return m.group(1) if m else text


def env_info(args, ctx: Ctx) -> dict:
    def git(*a):
        r = subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True)
        return r.stdout.strip()

    cpu = cpu_model()
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "kernel": platform.release(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "headway_commit": git("rev-parse", "--short", "HEAD"),
        "headway_tree_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "versions": {
            "headway": f"{git('rev-parse', '--short', 'HEAD')} (release build of the work tree)",
            "envoy": version([str(ctx.envoy_bin), "--version"], r"/(\d+\.\d+\.\d+)/")
            if ctx.envoy_bin else "-",
            "haproxy": version(["haproxy", "-v"], r"version (\S+)"),
            "nginx": version(["nginx", "-v"], r"nginx/(\S+)"),
            "wrk": version(["wrk", "-v"], r"wrk (?:debian/)?(\S+)"),
        },
    }


def write_report(out: Path, args, ctx: Ctx, info: dict, runs: list[dict], wall: float) -> str:
    med = medians(runs)
    peers = args.peers
    smoke = args.smoke
    L = []
    if smoke:
        L += ["# SMOKE RUN — not results",
              "",
              f"Short runs ({args.duration}, {args.rounds} round) to show that every peer starts, "
              "routes and is measured. The figures mean nothing about performance.", ""]
    else:
        L += ["# headway benchmark: side by side with Envoy, HAProxy and nginx", ""]
    L += [f"- date: {info['date']}; commit {info['headway_commit']}"
          f"{' (work tree modified)' if info['headway_tree_dirty'] else ''}; "
          f"{info['cores']} cores ({info['cpu']}); kernel {info['kernel']}; load average at "
          f"start {', '.join(f'{x:.2f}' for x in info['loadavg_at_start'])}",
          f"- command: `{args.command_line}`",
          f"- load: `wrk -t{args.threads} -c{args.connections} -d{args.duration} --latency` "
          f"(+ `-H 'Connection: close'` for the close case), {args.warmup} warm-up per run "
          f"(not measured); {args.rounds} round(s) interleaved (each round: every case, every "
          f"peer in turn, each proxy started afresh); medians over rounds; wall time "
          f"{wall / 60:.1f} min",
          f"- backend: nginx on {ctx.backend.ip}, {args.backend_workers} worker(s), fixed 17-byte "
          f"body; DNS: `headless-dns` on {ctx.dns_addr} answering `{args.dns_name}.` → "
          f"{ctx.backend.ip} (TTL 5 s); every proxy refreshes every 5 s"
          + ("; CPU pinning: proxy on CPU 1, wrk + backend + DNS on CPU 0" if args.pin else
             "; no CPU pinning"),
          "- versions: " + "; ".join(f"{k} {v}" for k, v in info["versions"].items()),
          "- proxy CPU = utime + stime of all the proxy's processes during the measured wrk run "
          "(/proc/<pid>/stat), per 100k requests (µs per request in brackets); peak RSS = VmHWM "
          "summed over its processes (warm-up included); idle RSS = VmRSS after start and one "
          "request; errors = wrk's connect/read/write/timeout errors plus non-2xx answers",
          ""]
    for case in args.cases:
        L += [f"## {CASES[case]['title']}", ""]
        L += table(case, med, peers)
        L.append("")
    na = sorted({(r["peer"], r["case"], r["reason"]) for r in runs if r.get("status") == "n/a"})
    if na:
        L += ["Not applicable:", ""]
        L += [f"- {p} / {c}: {why}" for p, c, why in na]
        L.append("")
    L += ["Peer notes:", "",
          "- nginx 1.22 (Debian 12) cannot re-resolve a name inside an `upstream` block "
          "(`server … resolve` is open source only from 1.27.3), and upstream keep-alive exists "
          "only in `upstream` blocks. So it is measured twice: `nginx` = static upstream (the "
          "backend's IP literal, keep-alive 128; NO DNS discovery) and `nginx-dns` = `resolver` + "
          "variable `proxy_pass` (re-resolves every 5 s through the same DNS server; a new "
          "upstream connection per request).",
          "- Envoy: STRICT_DNS cluster, c-ares resolver pointed at the bench DNS server "
          "(`typed_dns_resolver_config`); HAProxy: `server-template` + `resolvers`, "
          "`http-reuse always`; headway: one cluster, `dns_refresh_rate: 5s`.", ""]
    t = targets(med)
    if t:
        L += ["## Issue 8 targets (headway, keep-alive case)" + (" — smoke: not judged" if smoke
                                                                  else ""), "",
              "| target | measured | verdict |", "|---|---|---|"]
        L += [f"| {a} | {b} | {c if not smoke else '(smoke)'} |" for a, b, c in t]
        L += ["", "Scale targets (10,000 idle connections < 150 MB, discovery of 1,000 records "
              "< 5 ms CPU) are measured by `bench/scale.sh`.", ""]
    L += ["Issue 8's reference figures (2026-11-25, same machine kind, keep-alive, one worker):", "",
          "| peer | req/s | p99 | CPU per request | RSS |", "|---|---:|---:|---:|---:|"]
    L += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in ISSUE_REFERENCE]
    L += ["", f"Raw results: `{out.relative_to(REPO) if out.is_relative_to(REPO) else out}/raw/"
          "<case>/r<round>-<peer>/` (confs, logs, wrk output, run.json); all figures in "
          "`results.json`.", ""]
    text = "\n".join(L)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(
        {"env": info, "settings": {k: v for k, v in vars(args).items()},
         "wall_seconds": round(wall, 1), "medians": list(med.values()),
         "targets": [{"target": a, "measured": b, "verdict": c} for a, b, c in t],
         "runs": runs}, indent=2, default=str))
    return text


# ---------------------------------------------------------------------------------------------


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # stop what we started, as on Ctrl-C
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", default="10s", help="wrk -d of each measured run")
    ap.add_argument("--warmup", default="2s", help="wrk run before each measured one (0 = none)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--cooldown", type=float, default=1.0, help="seconds between runs")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--cases", default="keepalive,close,h2c,latency")
    ap.add_argument("--peers", default="direct,headway,pingora,envoy,haproxy,nginx,nginx-dns")
    ap.add_argument("--pin", action="store_true",
                    help="proxy on CPU 1; wrk, backend and DNS on CPU 0")
    ap.add_argument("--smoke", action="store_true", help="label the output a smoke run")
    ap.add_argument("--perf", default="", help="peers to profile with perf record during the "
                    "measured runs (e.g. headway): raw/.../perf.data and perf-report.txt; "
                    "their figures are marked 'profiled'")
    ap.add_argument("--backend-workers", type=int, default=2)
    ap.add_argument("--backend-ip", default="127.0.10.1")
    ap.add_argument("--backend-port", type=int, default=18081, help="HTTP/1.1; h2c is +1")
    ap.add_argument("--dns-port", type=int, default=15390)
    ap.add_argument("--dns-name", default="backend.bench")
    ap.add_argument("--proxy-port-base", type=int, default=18000)
    ap.add_argument("--admin-port-base", type=int, default=18900)
    ap.add_argument("--ready-timeout", type=float, default=30)
    ap.add_argument("--results", default=str(BENCH / "results"))
    ap.add_argument("--headway-bin", default=str(REPO / "target/release/headway"))
    ap.add_argument("--floor-bin", default=str(REPO / "target/release/examples/pingora_floor"))
    ap.add_argument("--dns-bin", default=str(REPO / "target/release/headless-dns"))
    ap.add_argument("--envoy-bin", default=os.environ.get("ENVOY_BIN"))
    args = ap.parse_args()
    args.command_line = os.environ.get("BENCH_COMMAND") or " ".join(["bench/lib/bench.py",
                                                                      *sys.argv[1:]])
    args.cases = [c for c in args.cases.split(",") if c]
    args.peers = [p for p in args.peers.split(",") if p]
    args.perf = [p for p in args.perf.split(",") if p]
    if args.perf and not shutil.which("perf"):
        ap.error("--perf needs perf (Debian: linux-perf)")
    for c in args.cases:
        if c not in CASES:
            ap.error(f"unknown case {c}: one of {', '.join(CASES)}")
    for p in args.peers:
        if p not in PEERS:
            ap.error(f"unknown peer {p}: one of {', '.join(PEERS)}")
    if "envoy" in args.peers and not args.envoy_bin:
        ap.error("envoy needs --envoy-bin or ENVOY_BIN (bench/run.sh sets it)")

    ctx = Ctx(args)
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-smoke" if args.smoke else "")
    out = Path(args.results) / stamp
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    info = env_info(args, ctx)
    (out / "env.json").write_text(json.dumps(info, indent=2))

    order = list(PEERS)  # fixed ports, whichever peers run: headway 18000, envoy 18001, …
    peers = [PEERS[p](ctx, args.proxy_port_base + order.index(p) - 1) for p in args.peers]
    plan = [(r, c, p) for r in range(1, args.rounds + 1) for c in args.cases for p in peers]
    live = [x for x in plan if not x[2].not_applicable(x[1])]
    per_run = duration_s(args.duration) + duration_s(args.warmup or "0s") + 3
    log(f"results in {out}")
    log(f"{len(live)} runs ({args.rounds} round(s) × cases {','.join(args.cases)} × "
        f"peers {','.join(args.peers)}), about {len(live) * per_run / 60:.1f} min")

    dns = ctx.backend = None
    runs: list[dict] = []
    t0 = time.monotonic()
    try:
        ctx.backend = Backend(raw, args.backend_ip, args.backend_port, args.backend_port + 1,
                              args.backend_workers, ctx.load_cpus)
        dns = Dns(raw, Path(args.dns_bin), "127.0.0.1", args.dns_port,
                  {args.dns_name: [args.backend_ip]}, ctx.load_cpus)
        for i, (rnd, case, peer) in enumerate(plan, 1):
            rec = run_one(ctx, peer, case, rnd, raw)
            runs.append(rec)
            if rec["status"] == "ok":
                log(f"[{i}/{len(plan)}] round {rnd} {case:9} {peer.name:9} "
                    f"{rec['rps']:>9,.0f} req/s  p50 {fmt_ms(rec['wrk']['p50_us'])} ms  "
                    f"p99 {fmt_ms(rec['wrk']['p99_us'])} ms  p99.9 {fmt_ms(rec['wrk']['p999_us'])}"
                    f" ms  cpu {rec.get('proxy_cpu_us_per_req') or 0:.1f} µs/req  "
                    f"peak {fmt_mb(rec.get('peak_rss_kb'))} MB  errors {rec['errors']}")
            elif rec["status"] == "n/a":
                pass
            else:
                log(f"[{i}/{len(plan)}] round {rnd} {case} {peer.name}: FAILED: {rec['reason']}")
            if rec["status"] != "n/a":
                time.sleep(args.cooldown)
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
    finally:
        if dns:
            dns.stop()
        if ctx.backend:
            ctx.backend.stop()
    wall = time.monotonic() - t0
    text = write_report(out, args, ctx, info, runs, wall)
    print()
    print(text)
    log(f"written: {out / 'results.md'} and results.json")
    failed = [r for r in runs if r.get("status") == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
