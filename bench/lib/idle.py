"""Memory of idle keep-alive clients (issue 25, item 3), driven by bench/idle.sh; see
bench/README.md.

Each peer (headway, Envoy, HAProxy; one worker each) proxies to the same nginx on loopback. For
each: start it, send one request, wait, read its RSS; then open N client connections, each sends
one GET and keeps its connection open (256 opening at a time), wait 2 s, read RSS again:

    per idle client = (RSS with the N clients held - RSS before) / N

which counts every cost the clients brought, fixed ones too (upstream connections pooled during
the burst, allocator pages kept). The clients are opened in two halves with a reading between:
the second half's cost per client (the marginal cost, without the fixed part) is shown as well.
The open-files limit is raised for the run (to 65,536 where the hard limit allows, as root).

Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BENCH, REPO, Backend, Proc, cpu_model, http_get, log, mem_kb, port_free, tool_version,
    wait_until,
)

BACKEND_IP = "127.0.11.1"
BACKEND_H1, BACKEND_H2C = 18581, 18582
PROXY = ("127.0.0.1", 18500)
ADMIN = ("127.0.0.1", 18590)
NOFILE = 65_536
PEERS = ("headway", "envoy", "haproxy")


def headway_conf(d: Path) -> Path:
    conf = d / "headway.yaml"
    conf.write_text("\n".join([
        "# written by bench/lib/idle.py: an IP-literal cluster, the access log as shipped (on)",
        "version: 1",
        "threads: 1",
        f"pid_file: {d}/headway.pid",
        f"upgrade_sock: {d}/headway_upgrade.sock",
        "grace_period_seconds: 1",
        "graceful_shutdown_timeout_seconds: 1",
        "gateway:",
        f'  listen: ["{PROXY[0]}:{PROXY[1]}"]',
        f'  admin: {{ listen: "{ADMIN[0]}:{ADMIN[1]}" }}',
        "  drain_time: 0s",
        f"  access_log: {{ path: {d}/access.log }}",
        "  idle_timeout: 600s",
        "  routes:",
        "    - { prefix: /, cluster: backend }",
        "  clusters:",
        "    - name: backend",
        f"      address: {BACKEND_IP}",
        f"      port: {BACKEND_H1}",
        "      outlier_detection: { consecutive_failures: 0 }",
    ]) + "\n")
    return conf


def envoy_conf(d: Path) -> Path:
    conf = d / "envoy.yaml"
    conf.write_text(f"""# written by bench/lib/idle.py: a static cluster, no access log
admin:
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
                common_http_protocol_options: {{ idle_timeout: 600s }}
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: backend }} }}]
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
    - name: backend
      type: STATIC
      connect_timeout: 1s
      load_assignment:
        cluster_name: backend
        endpoints:
          - lb_endpoints:
              - endpoint: {{ address: {{ socket_address: {{ address: {BACKEND_IP}, port_value: {BACKEND_H1} }} }} }}
""")
    return conf


def haproxy_conf(d: Path, clients: int) -> Path:
    conf = d / "haproxy.cfg"
    # HAProxy wants ~2 descriptors per connection and refuses to start past the limit
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    maxconn = max(clients + 100, 100) if soft >= 2 * clients + 200 else (soft - 200) // 2
    conf.write_text(f"""# written by bench/lib/idle.py: one thread, no log
global
    nbthread 1
    maxconn {maxconn}
    pidfile {d}/haproxy.pid

defaults
    mode http
    timeout connect 1s
    timeout client 600s
    timeout server 60s
    timeout http-keep-alive 600s
    option http-keep-alive
    http-reuse always

frontend ingress
    bind {PROXY[0]}:{PROXY[1]}
    default_backend backend

backend backend
    server pod {BACKEND_IP}:{BACKEND_H1}
""")
    return conf


def start(peer: str, d: Path, args) -> Proc:
    if not wait_until(lambda: port_free(*PROXY) and port_free(*ADMIN), 10):
        raise RuntimeError(f"{PROXY} or {ADMIN} in use: is another idle bench running?")
    if peer == "headway":
        argv = [str(args.headway_bin), "-c", str(headway_conf(d))]
        proc = Proc(peer, argv, d / "log.txt", env={"RUST_LOG": "warn"},
                    stop_signal=signal.SIGINT)
    elif peer == "envoy":
        argv = [args.envoy_bin, "-c", str(envoy_conf(d)), "--concurrency", "1",
                "--log-level", "warn", "--base-id", "25"]
        proc = Proc(peer, argv, d / "log.txt")
    else:
        proc = Proc(peer, ["haproxy", "-db", "-f", str(haproxy_conf(d, args.clients))], d / "log.txt",
                    stop_signal=signal.SIGUSR1)
    if not wait_until(lambda: http_get(*PROXY, "/")[0] == 200, 30, 0.2):
        proc.stop()
        raise RuntimeError(f"{peer} did not answer:\n{proc.tail()}")
    return proc


async def open_clients(n: int, held: list, failures: list) -> None:
    """n connections, one GET each, kept open (appended to `held`)."""
    sem = asyncio.Semaphore(256)

    async def one():
        async with sem:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(*PROXY), 10)
                w.write(b"GET /idle HTTP/1.1\r\nHost: bench\r\n\r\n")
                await w.drain()
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await asyncio.wait_for(r.readexactly(length), 10)
                if not head.startswith(b"HTTP/1.1 200"):
                    failures.append(head.split(b"\r\n")[0].decode())
                held.append((r, w))
            except Exception as e:  # noqa: BLE001 - counted and reported
                failures.append(repr(e))

    await asyncio.gather(*(one() for _ in range(n)))


async def ask_again(r, w) -> bool:
    try:
        w.write(b"GET /idle HTTP/1.1\r\nHost: bench\r\n\r\n")
        await w.drain()
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
        return head.startswith(b"HTTP/1.1 200")
    except Exception:  # noqa: BLE001 - counted
        return False


def rss_kb(proc: Proc) -> int:
    return mem_kb(proc.pids(), "VmRSS")


async def hold(proc: Proc, n: int, settle: float) -> dict:
    held: list = []
    failures: list = []
    half = n // 2
    t0 = time.monotonic()
    await open_clients(half, held, failures)
    await asyncio.sleep(settle)
    rss_half = rss_kb(proc)
    await open_clients(n - half, held, failures)
    opened = time.monotonic() - t0
    await asyncio.sleep(settle)
    rss_all = rss_kb(proc)
    still = sum(1 for r, _ in held if not r.at_eof())
    # The last clients opened (past headway's parking budget, if any) ask again on their
    # connection: an idle client must be woken by its next request.
    again = await asyncio.gather(*(ask_again(r, w) for r, w in held[-200:]))
    for _, w in held:
        w.close()
    return {"opened": len(held), "failures": len(failures), "first_failures": failures[:5],
            "open_seconds": round(opened, 2), "rss_half_kb": rss_half, "rss_held_kb": rss_all,
            "still_open": still, "second_requests": len(again),
            "second_requests_failed": sum(1 for ok in again if not ok)}


def run_one(peer: str, rnd: int, raw: Path, args) -> dict:
    d = raw / f"{peer}-r{rnd}"
    d.mkdir(parents=True, exist_ok=True)
    log(f"round {rnd}, {peer}: {args.clients} idle clients")
    proc = start(peer, d, args)
    try:
        time.sleep(1)
        before = rss_kb(proc)
        res = {"peer": peer, "round": rnd, "clients": args.clients, "rss_before_kb": before}
        res.update(asyncio.run(hold(proc, args.clients, args.settle)))
        if peer == "headway":
            try:
                _, body, _ = http_get(*ADMIN, "/metrics")
                for line in body.splitlines():
                    if line.startswith("headway_parked_connections "):
                        res["parked_after_close"] = float(line.split()[1])
            except OSError:
                pass
        n = res["opened"] or 1
        res["kb_per_client"] = (res["rss_held_kb"] - before) / n
        res["kb_per_client_marginal"] = ((res["rss_held_kb"] - res["rss_half_kb"])
                                         / max(1, n - args.clients // 2))
        res["alive"] = proc.alive()
        log(f"  RSS {before / 1024:.1f} → {res['rss_half_kb'] / 1024:.1f} → "
            f"{res['rss_held_kb'] / 1024:.1f} MB: {res['kb_per_client']:.1f} kB per client "
            f"({res['kb_per_client_marginal']:.1f} kB marginal), {res['failures']} failed; "
            f"second request on the last {res['second_requests']}: "
            f"{res['second_requests_failed']} failed")
        return res
    finally:
        proc.stop()


def report(info: dict, runs: list[dict]) -> str:
    L = [f"# Idle keep-alive clients ({info['date']})", "",
         f"{info['clients']:,} clients, each one GET then idle on its open connection; one "
         f"worker each; {info['rounds']} round(s), the median shown (min – max). Per client = "
         "(RSS with the clients held − RSS before) / clients; marginal = the second half's "
         "cost per client; failed counts the clients whose request failed, and the last 200 clients' "
         "second request on their idle connection, made after the reading. Command: `" +
         info["command"] + "`; tree: " + info["commit"] + ".",
         "",
         "| peer | RSS before MB | RSS held MB | **kB per idle client** | marginal kB | "
         "failed | rounds (min – max) |",
         "|---|---:|---:|---:|---:|---:|---:|"]
    for peer in info["peers"]:
        rs = [r for r in runs if r["peer"] == peer]
        if not rs:
            continue
        per = [r["kb_per_client"] for r in rs]
        med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
        L.append(f"| {info['labels'][peer]} | {med('rss_before_kb') / 1024:.1f} | "
                 f"{med('rss_held_kb') / 1024:.1f} | **{statistics.median(per):.1f}** | "
                 f"{med('kb_per_client_marginal'):.1f} | "
                 f"{sum(r['failures'] + r['second_requests_failed'] for r in rs)} | "
                 f"{min(per):.1f} – {max(per):.1f} |")
    L += ["", f"Machine: {info['cpu']}, {info['cores']} cores, kernel {info['kernel']}; "
          f"open-files limit {info['nofile']}."]
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=10_000, help="idle clients (10,000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, peers interleaved (3)")
    ap.add_argument("--peers", default=",".join(PEERS), help="headway,envoy,haproxy (all)")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds between the last client opened and the reading (2)")
    ap.add_argument("--smoke", action="store_true", help="1 round of 500 clients")
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    ap.add_argument("--headway-bin", type=Path, default=target / "release/headway")
    ap.add_argument("--envoy-bin", default=os.environ.get("ENVOY_BIN") or "envoy")
    ap.add_argument("--out", type=Path, help="results directory (bench/results/<timestamp>-idle)")
    args = ap.parse_args()
    if args.smoke:
        args.clients, args.rounds = 500, 1
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    for p in peers:
        if p not in PEERS:
            ap.error(f"unknown peer {p!r}: {', '.join(PEERS)}")
    found = {"headway": args.headway_bin.exists(), "envoy": bool(shutil.which(args.envoy_bin)),
             "haproxy": bool(shutil.which("haproxy"))}
    for p in list(peers):
        if not found[p]:
            log(f"{p} not found: left out")
            peers.remove(p)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(NOFILE, args.clients * 3)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile < args.clients + 200:
        raise SystemExit(f"open-files limit {nofile} < {args.clients} clients + 200: raise it")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = args.out or BENCH / "results" / f"{stamp}-idle"
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    commit = os.popen(f"git -C {REPO} rev-parse --short HEAD").read().strip()
    info = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": os.environ.get("BENCH_COMMAND", "bench/idle.sh"), "commit": commit,
            "clients": args.clients, "rounds": args.rounds, "peers": peers, "nofile": nofile,
            "cpu": cpu_model(), "cores": os.cpu_count(), "kernel": os.uname().release,
            "labels": {"headway": "headway", "envoy": "Envoy", "haproxy": "HAProxy"}}
    if "envoy" in peers:
        version = tool_version([args.envoy_bin, "--version"]).split("/")
        info["labels"]["envoy"] = f"Envoy {version[1]}" if len(version) > 1 else "Envoy"
    if "haproxy" in peers:
        info["labels"]["haproxy"] = tool_version(["haproxy", "-v"]).split(" - ")[0]
    runs = []
    backend = Backend(raw, BACKEND_IP, BACKEND_H1, BACKEND_H2C, 1, None)
    try:
        for rnd in range(1, args.rounds + 1):
            for peer in peers:
                runs.append(run_one(peer, rnd, raw, args))
    finally:
        backend.stop()
    text = report(info, runs)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"info": info, "runs": runs}, indent=2) + "\n")
    print()
    print(text)
    log(f"written: {out}/results.md, results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
