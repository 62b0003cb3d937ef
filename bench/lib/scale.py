"""headway at scale (issue 8, part 2), driven by bench/scale.sh; see bench/README.md.

  idle       one cluster, one record: idle RSS, and the idle CPU of a refresh (the baseline)
  records    one cluster of 1,000 A records (an answer that only fits over TCP): discovery CPU
             per refresh, RSS
  clusters   100 clusters of 10 records each, 100 routes: discovery CPU per refresh, RSS
  conns      10,000 client connections, each after one request left idle (keep-alive): RSS
  parked     the same with 4,000, all within headway's parking budget: RSS of parked ones alone

Discovery CPU per refresh = CPU time of the otherwise idle gateway over a window / the refreshes
counted in that window by headway's own `headway_dns_refreshes_total`. It includes whatever the
idle gateway does besides (timers, the admin scrape of /metrics at both ends): the `idle` test
measures that floor with a one-record cluster, and the report shows both the raw figure and the
figure above that floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BENCH, REPO, Backend, Dns, Proc, cpu_ns_threads, cpu_seconds, dns_query, get_json, http_get,
    headway_metric, log, mem_kb, port_free, wait_until,
)

PROXY = ("127.0.0.1", 18100)
ADMIN = ("127.0.0.1", 18190)


def headway_conf(d: Path, args, clusters: list[tuple[str, str, int]], *,
                 idle_timeout: str = "60s") -> Path:
    """clusters: (name, dns name, port). One route per cluster: /<name>."""
    lines = [
        "# written by bench/lib/scale.py",
        "version: 1",
        "threads: 1",
        f"pid_file: {d}/headway.pid",
        f"upgrade_sock: {d}/headway_upgrade.sock",
        "grace_period_seconds: 1",
        "graceful_shutdown_timeout_seconds: 1",
        "gateway:",
        f'  listen: ["{PROXY[0]}:{PROXY[1]}"]',
        f'  admin: {{ listen: "{ADMIN[0]}:{ADMIN[1]}" }}',
        f'  resolver: {{ nameservers: ["127.0.0.1:{args.dns_port}"] }}',
        "  access_log: { enabled: false }",
        f"  idle_timeout: {idle_timeout}",
        "  routes:",
    ]
    for name, _, _ in sorted(clusters, key=lambda c: -len(c[0])):  # longest prefix first
        lines.append(f"    - {{ prefix: /{name}, cluster: {name} }}")
    lines.append("  clusters:")
    for name, dns_name, port in clusters:
        lines += [
            f"    - name: {name}",
            f"      address: {dns_name}.",
            f"      port: {port}",
            f"      dns_refresh_rate: {args.refresh}",
            "      dns_lookup_family: v4_only",
        ]
    conf = d / "headway.yaml"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def start_headway(d: Path, args, conf: Path) -> Proc:
    if not wait_until(lambda: port_free(*PROXY) and port_free(*ADMIN), 10):
        raise RuntimeError(f"{PROXY} or {ADMIN} in use")
    proc = Proc("headway", [str(args.headway_bin), "-c", str(conf)], d / "headway.log",
                env={"RUST_LOG": "warn"}, stop_signal=signal.SIGINT)
    ok = wait_until(lambda: http_get(*ADMIN, "/ready")[0] == 200, 60, 0.2)
    if not ok:
        proc.stop()
        raise RuntimeError("headway never became ready:\n" + proc.tail())
    return proc


def backends_found(clusters_json) -> int:
    return sum(len(c.get("backends", [])) for c in clusters_json.get("clusters", []))


def refreshes() -> float:
    return headway_metric(*ADMIN, "headway_dns_refreshes_total")


def measure_window(proc: Proc, seconds: float) -> dict:
    """CPU of the gateway over `seconds` of idling, and the refreshes in that window."""
    pid = proc.pid
    r0, c0, n0 = refreshes(), cpu_seconds([pid]), cpu_ns_threads(pid)
    time.sleep(seconds)
    r1, c1, n1 = refreshes(), cpu_seconds([pid]), cpu_ns_threads(pid)
    count = r1 - r0
    return {
        "window_s": seconds,
        "refreshes": count,
        "cpu_s_ticks": round(c1 - c0, 3),
        "cpu_ms_threads": round((n1 - n0) / 1e6, 3),
        "cpu_ms_per_refresh": (n1 - n0) / 1e6 / count if count else None,
        "cpu_ms_per_s": (n1 - n0) / 1e6 / seconds,
        "rss_kb": mem_kb([pid], "VmRSS"),
        "hwm_kb": mem_kb([pid], "VmHWM"),
    }


# ---------------------------------------------------------------------------------------------


def test_idle(args, raw: Path, backend: Backend) -> dict:
    d = raw / "idle"
    d.mkdir(parents=True, exist_ok=True)
    dns = Dns(d, args.dns_bin, "127.0.0.1", args.dns_port, {"backend.bench": [backend.ip]}, None)
    proc = None
    try:
        conf = headway_conf(d, args, [("backend", "backend.bench", backend.port_h1)])
        proc = start_headway(d, args, conf)
        status, body, _ = http_get(*PROXY, "/backend")
        res = {"route_check": f"{status} {body.strip()}",
               "rss_after_start_kb": mem_kb([proc.pid], "VmRSS")}
        time.sleep(1)
        res.update(measure_window(proc, args.window))
        res["rss_idle_kb"] = res["rss_kb"]
        return res
    finally:
        if proc:
            proc.stop()
        dns.stop()


def test_records(args, raw: Path, backend: Backend) -> dict:
    d = raw / "records"
    d.mkdir(parents=True, exist_ok=True)
    n = args.records
    ips = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(n)]
    dns = Dns(d, args.dns_bin, "127.0.0.1", args.dns_port, {"big.bench": ips}, None)
    proc = None
    try:
        udp_tc, udp_count = dns_query("127.0.0.1", args.dns_port, "big.bench", tcp=False)
        tcp_tc, tcp_count = dns_query("127.0.0.1", args.dns_port, "big.bench", tcp=True)
        res = {"records": n, "dns_udp_answer": {"truncated": udp_tc, "answers": udp_count},
               "dns_tcp_answer": {"truncated": tcp_tc, "answers": tcp_count}}
        conf = headway_conf(d, args, [("big", "big.bench", backend.port_h1)])
        proc = start_headway(d, args, conf)
        found = wait_until(lambda: (c := backends_found(get_json(*ADMIN, "/clusters"))) >= n and c,
                           30, 0.2)
        res["backends_found"] = found or backends_found(get_json(*ADMIN, "/clusters"))
        (d / "clusters.json").write_text(json.dumps(get_json(*ADMIN, "/clusters"), indent=1))
        time.sleep(1)
        res.update(measure_window(proc, args.window))
        return res
    finally:
        if proc:
            proc.stop()
        dns.stop()


def test_clusters(args, raw: Path, backend: Backend) -> dict:
    d = raw / "clusters"
    d.mkdir(parents=True, exist_ok=True)
    k, per = args.clusters, args.records_per_cluster
    records = {f"svc-{i:03}.bench": [f"127.2.{i}.{j + 1}" for j in range(per)] for i in range(k)}
    dns = Dns(d, args.dns_bin, "127.0.0.1", args.dns_port, records, None)
    proc = None
    try:
        conf = headway_conf(d, args, [(f"svc-{i:03}", f"svc-{i:03}.bench", backend.port_h1)
                                      for i in range(k)])
        proc = start_headway(d, args, conf)
        want = k * per
        found = wait_until(lambda: (c := backends_found(get_json(*ADMIN, "/clusters"))) >= want
                           and c, 30, 0.2)
        res = {"clusters": k, "records_per_cluster": per,
               "backends_found": found or backends_found(get_json(*ADMIN, "/clusters"))}
        time.sleep(1)
        res.update(measure_window(proc, args.window))
        if res["cpu_ms_per_refresh"] is not None:
            res["cpu_ms_per_refresh_round"] = res["cpu_ms_per_refresh"] * k
        return res
    finally:
        if proc:
            proc.stop()
        dns.stop()


async def hold_connections(n: int, hold: float, on_held) -> dict:
    """Opens n connections, one GET each (keep-alive), keeps them all open for `hold` seconds."""
    sem = asyncio.Semaphore(256)
    conns, failures = [], []

    async def one(i):
        async with sem:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(*PROXY), 10)
                w.write(b"GET /backend HTTP/1.1\r\nHost: bench\r\n\r\n")
                await w.drain()
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await r.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    failures.append(head.split(b"\r\n")[0].decode())
                conns.append((r, w))
            except Exception as e:  # noqa: BLE001 - counted and reported
                failures.append(repr(e))

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    opened = time.monotonic() - t0
    await asyncio.sleep(2)
    held = on_held(len(conns))
    await asyncio.sleep(hold)
    still = sum(1 for r, _ in conns if not r.at_eof())
    for _, w in conns:
        w.close()
    return {"opened": len(conns), "failures": len(failures), "first_failures": failures[:5],
            "open_seconds": round(opened, 2), "still_open_after_hold": still, **held}


def established_to(port: int) -> int:
    """Server-side ESTABLISHED sockets on `port` (from /proc/net/tcp: state 01)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == "01" and int(f[1].split(":")[1], 16) == port:
            count += 1
    return count


def test_conns(args, raw: Path, backend: Backend, name: str = "conns",
               count: int | None = None) -> dict:
    count = args.conns if count is None else count
    d = raw / name
    d.mkdir(parents=True, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 100:
        raise RuntimeError(f"open files limit {soft} < {count} connections + 100 "
                           f"(hard limit {hard}): raise it (ulimit -n)")
    dns = Dns(d, args.dns_bin, "127.0.0.1", args.dns_port, {"backend.bench": [backend.ip]}, None)
    proc = None
    try:
        conf = headway_conf(d, args, [("backend", "backend.bench", backend.port_h1)],
                            idle_timeout="600s")
        proc = start_headway(d, args, conf)
        http_get(*PROXY, "/backend")
        time.sleep(1)
        pid = proc.pid
        res = {"connections": count, "rss_before_kb": mem_kb([pid], "VmRSS"),
               "nofile_limit": soft}

        def on_held(opened):
            return {"rss_held_kb": mem_kb([pid], "VmRSS"), "hwm_kb": mem_kb([pid], "VmHWM"),
                    "server_established": established_to(PROXY[1]),
                    # Idle connections waiting without a request state (src/downstream.rs),
                    # within a budget of a quarter of the open-files limit.
                    "parked": headway_metric(*ADMIN, "headway_parked_connections"),
                    "parking_budget": headway_metric(*ADMIN, "headway_parking_budget")}

        res.update(asyncio.run(hold_connections(count, args.hold, on_held)))
        time.sleep(1)
        res["rss_after_close_kb"] = mem_kb([pid], "VmRSS")
        res["alive"] = proc.alive()
        if res["opened"]:
            res["kb_per_connection"] = (res["rss_held_kb"] - res["rss_before_kb"]) / res["opened"]
        return res
    finally:
        if proc:
            proc.stop()
        dns.stop()


def test_parked(args, raw: Path, backend: Backend) -> dict:
    """As `conns`, with few enough connections that every one is parked (the budget is a
    quarter of the open-files limit): the memory of a parked idle connection alone."""
    return test_conns(args, raw, backend, "parked", args.parked_conns)


TESTS = {"idle": test_idle, "records": test_records, "clusters": test_clusters,
         "conns": test_conns, "parked": test_parked}


def mb(kb):
    return "—" if kb is None else f"{kb / 1024:.1f}"


def report(out: Path, args, results: dict, wall: float) -> str:
    L = []
    if args.smoke:
        L += ["# SMOKE RUN — not results", "",
              f"Short windows ({args.window:g} s) to show the scale tests run; the figures mean "
              "little.", ""]
    else:
        L += ["# headway at scale", ""]
    L += [f"- date: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}; {os.cpu_count()} cores; load average "
          f"at start {', '.join(f'{x:.2f}' for x in args.loadavg)}; wall {wall / 60:.1f} min",
          f"- command: `{args.command_line}`",
          f"- headway: `threads: 1`, access log off, no health checks, "
          f"`dns_refresh_rate: {args.refresh}`; DNS: services/headless-dns (UDP + TCP)",
          ""]
    idle = results.get("idle", {})
    floor = idle.get("cpu_ms_per_s") if isinstance(idle, dict) else None
    L += ["| test | what | figure |", "|---|---|---|"]

    def row(test, what, fig):
        L.append(f"| {test} | {what} | {fig} |")

    for name, r in results.items():
        if "error" in r:
            row(name, "FAILED", r["error"].splitlines()[0])
            continue
        if name == "idle":
            row("idle", "RSS after start / idle after one request",
                f"{mb(r['rss_after_start_kb'])} / {mb(r['rss_idle_kb'])} MB")
            row("idle", "CPU per refresh, 1 record (idle floor)",
                f"{r['cpu_ms_per_refresh']:.3f} ms ({r['refreshes']:.0f} refreshes in "
                f"{r['window_s']:g} s; {r['cpu_ms_per_s']:.3f} ms CPU/s)")
        elif name in ("records", "clusters"):
            label = (f"1 cluster × {r['records']} records" if name == "records" else
                     f"{r['clusters']} clusters × {r['records_per_cluster']} records")
            row(name, f"{label}: backends found", r["backends_found"])
            if name == "records":
                u, t = r["dns_udp_answer"], r["dns_tcp_answer"]
                row(name, "DNS answer over UDP (EDNS 4096) / TCP",
                    f"truncated={u['truncated']} with {u['answers']} records / "
                    f"{t['answers']} records over TCP")
            per = r["cpu_ms_per_refresh"]
            net = ""
            if per is not None and floor is not None and r["refreshes"]:
                above = (r["cpu_ms_threads"] - floor * r["window_s"]) / r["refreshes"]
                net = f"; above the idle floor {above:.3f} ms"
            row(name, "CPU per refresh (one name)",
                "—" if per is None else f"{per:.3f} ms ({r['refreshes']:.0f} refreshes in "
                f"{r['window_s']:g} s{net})")
            if name == "clusters" and r.get("cpu_ms_per_refresh_round") is not None:
                row(name, "CPU per refresh of all clusters", f"{r['cpu_ms_per_refresh_round']:.2f} ms")
            row(name, "RSS / peak RSS", f"{mb(r['rss_kb'])} / {mb(r['hwm_kb'])} MB")
        elif name in ("conns", "parked"):
            row(name, "connections open and idle (client / server ESTABLISHED)",
                f"{r['opened']} / {r['server_established']} ({r['failures']} failed; "
                f"{r['still_open_after_hold']} still open after {args.hold:g} s)")
            if r.get("parked") is not None:
                row(name, "of them parked (budget: a quarter of the open-files limit)",
                    f"{r['parked']:.0f} (budget {r['parking_budget']:.0f}; limit {r['nofile_limit']})")
            row(name, "RSS before / with them / peak / after closing",
                f"{mb(r['rss_before_kb'])} / {mb(r['rss_held_kb'])} / {mb(r['hwm_kb'])} / "
                f"{mb(r['rss_after_close_kb'])} MB")
            if r.get("kb_per_connection") is not None:
                row(name, "per idle connection", f"{r['kb_per_connection']:.1f} kB")
    L.append("")
    checks = []
    if "error" not in idle and idle:
        checks.append(("idle RSS < 20 MB", f"{mb(idle['rss_idle_kb'])} MB",
                       idle["rss_idle_kb"] < 20 * 1024))
    rec = results.get("records", {})
    if rec and "error" not in rec and rec.get("cpu_ms_per_refresh") is not None:
        checks.append((f"discovery of {rec['records']} records < 5 ms CPU",
                       f"{rec['cpu_ms_per_refresh']:.3f} ms", rec["cpu_ms_per_refresh"] < 5
                       and rec["backends_found"] >= rec["records"]))
    c = results.get("conns", {})
    if c and "error" not in c:
        checks.append((f"{c['connections']:,} idle connections < 150 MB",
                       f"{mb(c['rss_held_kb'])} MB",
                       c["rss_held_kb"] < 150 * 1024 and c["opened"] >= c["connections"]))
    if checks:
        L += ["Issue 8 targets:", "", "| target | measured | verdict |", "|---|---|---|"]
        L += [f"| {a} | {b} | {'(smoke)' if args.smoke else ('met' if ok else 'NOT met')} |"
              for a, b, ok in checks]
        L.append("")
    L.append(f"Raw: `{out.relative_to(REPO) if out.is_relative_to(REPO) else out}/raw/`, "
             "`scale.json`.")
    text = "\n".join(L) + "\n"
    (out / "scale.md").write_text(text)
    (out / "scale.json").write_text(json.dumps({"settings": vars(args), "results": results,
                                                "wall_seconds": round(wall, 1)},
                                               indent=2, default=str))
    return text


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # stop what we started, as on Ctrl-C
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tests", default="idle,records,clusters,conns,parked")
    ap.add_argument("--window", type=float, default=60, help="seconds of idling measured per test")
    ap.add_argument("--refresh", default="1s", help="dns_refresh_rate of every cluster")
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--records-per-cluster", type=int, default=10)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--parked-conns", type=int, default=4000,
                    help="connections of the `parked` test: under the parking budget")
    ap.add_argument("--hold", type=float, default=10, help="seconds the connections stay idle")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--dns-port", type=int, default=15391)
    ap.add_argument("--backend-port", type=int, default=18181)
    ap.add_argument("--results", default=str(BENCH / "results"))
    ap.add_argument("--headway-bin", default=str(REPO / "target/release/headway"))
    ap.add_argument("--dns-bin", default=str(REPO / "target/release/headless-dns"))
    args = ap.parse_args()
    args.command_line = os.environ.get("BENCH_COMMAND") or " ".join(["bench/lib/scale.py",
                                                                      *sys.argv[1:]])
    args.loadavg = os.getloadavg()
    args.dns_bin = Path(args.dns_bin)
    tests = [t for t in args.tests.split(",") if t]
    for t in tests:
        if t not in TESTS:
            ap.error(f"unknown test {t}: one of {', '.join(TESTS)}")
    out = Path(args.results) / (time.strftime("%Y%m%d-%H%M%S") + "-scale"
                                + ("-smoke" if args.smoke else ""))
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    log(f"results in {out}; tests {','.join(tests)}, {args.window:g} s windows")
    results: dict = {}
    t0 = time.monotonic()
    backend = Backend(raw, "127.0.10.1", args.backend_port, args.backend_port + 1, 1, None)
    try:
        for t in tests:
            log(f"test {t}")
            try:
                results[t] = TESTS[t](args, raw, backend)
            except Exception as e:  # noqa: BLE001 - reported, the other tests still run
                results[t] = {"error": f"{type(e).__name__}: {e}"}
            log(f"  {json.dumps(results[t], default=str)[:400]}")
    finally:
        backend.stop()
    text = report(out, args, results, time.monotonic() - t0)
    print()
    print(text)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
