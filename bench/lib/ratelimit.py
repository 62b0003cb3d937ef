"""rate_limit measured (issue 17), driven by bench/ratelimit.sh; see bench/README.md.

  accuracy   N keep-alive clients (default 8) as fast as they go for a bounded time (10 s) and
             a bounded count, against a route limited to RATE req/s with `key: route`: the
             allowed rate (the gateway's own `allowed` counter, checked against the 200s the
             clients got) against the configured one. A token bucket lets `burst` through at
             once, then `RATE` a second: the table shows the raw rate and the steady one
             ((allowed - burst) / time).
  cost       a fixed 5,000 requests/s (h2load --rps: 50 keep-alive clients at 100/s each, 10 s
             after 1 s of warm-up) through a limit that never refuses, counted locally and then
             in Redis on loopback (`store: { redis: … }`, Debian's redis-server started here):
             p50 and p99 of h2load's per-request log, the gateway's CPU per request (utime +
             stime from /proc), and Redis's.
  memory     100,000 distinct `x-api-client` values (`key: header`), one request each, from 4
             keep-alive clients: the gateway's VmRSS from /proc before and at checkpoints, with
             `max_keys` at its default (100,000) and at 10,000.

Standard library only. The backend is nginx answering a fixed body.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BENCH, REPO, Backend, Proc, cpu_model, cpu_seconds, headway_metric, http_get, log, mem_kb, port_free,
    wait_until,
)

PROXY = ("127.0.0.1", 18200)
ADMIN = ("127.0.0.1", 18290)
BACKEND_IP, BACKEND_H1, BACKEND_H2C = "127.0.17.10", 18281, 18282


def headway_conf(d: Path, filt: str) -> Path:
    conf = d / "headway.yaml"
    conf.write_text(f"""# written by bench/lib/ratelimit.py
version: 1
threads: 2
pid_file: {d}/headway.pid
upgrade_sock: {d}/headway_upgrade.sock
grace_period_seconds: 1
graceful_shutdown_timeout_seconds: 1
gateway:
  listen: ["{PROXY[0]}:{PROXY[1]}"]
  admin: {{ listen: "{ADMIN[0]}:{ADMIN[1]}" }}
  access_log: {{ enabled: false }}
  routes:
    - prefix: /limited
      cluster: backend
      filters: [{filt}]
  clusters:
    - {{ name: backend, address: {BACKEND_IP}, port: {BACKEND_H1} }}
""")
    return conf


def start_headway(d: Path, binary: Path, filt: str) -> Proc:
    d.mkdir(parents=True, exist_ok=True)
    if not wait_until(lambda: port_free(*PROXY) and port_free(*ADMIN), 10):
        raise RuntimeError(f"{PROXY} or {ADMIN} in use")
    proc = Proc("headway", [str(binary), "-c", str(headway_conf(d, filt))], d / "headway.log",
                env={"RUST_LOG": "warn"}, stop_signal=signal.SIGINT)
    if not wait_until(lambda: http_get(*ADMIN, "/ready")[0] == 200, 60, 0.2):
        proc.stop()
        raise RuntimeError("headway never became ready:\n" + proc.tail())
    return proc


def events(event: str) -> int:
    return int(headway_metric(*ADMIN, "headway_filter_events_total", route="/limited",
                              filter="rate_limit", event=event))


def load(clients: int, seconds: float, max_requests: int, headers_for) -> dict:
    """`clients` threads, each one keep-alive connection, requests until `seconds` pass or
    `max_requests` are sent in all. headers_for(i) gives the i-th request's headers."""
    counts: dict[int, int] = {}
    lock = threading.Lock()
    sent = [0]
    deadline = time.monotonic() + seconds

    def run() -> None:
        conn = http.client.HTTPConnection(*PROXY, timeout=10)
        mine: dict[int, int] = {}
        while time.monotonic() < deadline:
            with lock:
                if sent[0] >= max_requests:
                    break
                i = sent[0]
                sent[0] += 1
            try:
                conn.request("GET", "/limited/x", headers=headers_for(i))
                resp = conn.getresponse()
                resp.read()
                mine[resp.status] = mine.get(resp.status, 0) + 1
            except (OSError, http.client.HTTPException):
                mine[0] = mine.get(0, 0) + 1
                conn.close()
                conn = http.client.HTTPConnection(*PROXY, timeout=10)
        conn.close()
        with lock:
            for k, v in mine.items():
                counts[k] = counts.get(k, 0) + v

    threads = [threading.Thread(target=run) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"elapsed_s": time.monotonic() - started, "sent": sent[0], "statuses": counts}


def accuracy(args, work: Path, rate: int, burst: int) -> dict:
    filt = (f"{{ name: rate_limit, key: route, requests_per_unit: {rate}, unit: second, "
            f"burst: {burst} }}")
    proc = start_headway(work / f"accuracy-{rate}-{burst}", args.headway_bin, filt)
    try:
        time.sleep(max(1.0, burst / rate))  # a full bucket to start from
        a0 = events("allowed")
        r = load(args.clients, args.seconds, args.max_requests, lambda i: {})
        allowed = events("allowed") - a0
        limited = events("limited")
    finally:
        proc.stop()
    elapsed = r["elapsed_s"]
    row = {
        "rate": rate, "burst": burst, "clients": args.clients, **r,
        "allowed": allowed, "limited": limited,
        "offered_per_s": r["sent"] / elapsed,
        "allowed_per_s": allowed / elapsed,
        "steady_per_s": (allowed - burst) / elapsed,
    }
    row["error_pct"] = 100 * (row["allowed_per_s"] - rate) / rate
    row["steady_error_pct"] = 100 * (row["steady_per_s"] - rate) / rate
    ok200 = r["statuses"].get(200, 0)
    if ok200 != allowed:
        log(f"warning: clients got {ok200} 200s, the gateway counted {allowed} allowed")
    log(f"accuracy rate={rate} burst={burst}: {allowed} allowed in {elapsed:.2f} s "
        f"= {row['allowed_per_s']:.1f}/s ({row['error_pct']:+.2f}%), offered "
        f"{row['offered_per_s']:.0f}/s, statuses {r['statuses']}")
    return row


REDIS_PORT = 18296


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def cost(args, work: Path, store: str) -> dict:
    """The fixed-rate run through a limit that lets everything through, counted `store`."""
    d = work / f"cost-{store}"
    redis = None
    filt = "{ name: rate_limit, key: client, requests_per_unit: 1000000, unit: second"
    if store == "redis":
        redis = Proc("redis-server", ["redis-server", "--port", str(REDIS_PORT), "--bind",
                                      "127.0.0.1", "--save", "", "--appendonly", "no"],
                     d / "redis.log")
        if not wait_until(lambda: not port_free("127.0.0.1", REDIS_PORT), 10, 0.1):
            redis.stop()
            raise RuntimeError("redis-server did not start:\n" + redis.tail())
        filt += (f", store: {{ redis: {{ url: 'redis://127.0.0.1:{REDIS_PORT}', "
                 f"timeout: 50ms }} }}, failure_mode: deny")
    filt += " }"
    proc = start_headway(d, args.headway_bin, filt)
    logfile = d / "h2load.log"
    try:
        time.sleep(1.0)  # connected to Redis
        pids = proc.pids()
        c0 = cpu_seconds(pids)
        r0 = cpu_seconds(redis.pids()) if redis else 0.0
        a0 = events("allowed")
        out = subprocess.run(
            ["h2load", "--h1", "-c", "50", "--rps", "100", "-D", str(args.cost_seconds),
             "--warm-up-time", "1", "--log-file", str(logfile),
             f"http://{PROXY[0]}:{PROXY[1]}/limited/x"],
            capture_output=True, text=True, timeout=args.cost_seconds + 60)
        cpu = cpu_seconds(pids) - c0
        redis_cpu = (cpu_seconds(redis.pids()) - r0) if redis else 0.0
        allowed = events("allowed") - a0
        errors = headway_metric(*ADMIN, "headway_rate_limit_store_errors_total")
    finally:
        proc.stop()
        if redis:
            redis.stop()
    rows = [line.split("\t") for line in logfile.read_text().splitlines() if line.strip()]
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row[1]] = statuses.get(row[1], 0) + 1
    us = sorted(float(row[2]) for row in rows)
    if not us:
        raise RuntimeError("h2load logged no request:\n" + out.stdout + out.stderr)
    result = {
        "store": store, "requests": len(us), "statuses": statuses, "allowed": allowed,
        "store_errors": errors, "per_s": len(us) / args.cost_seconds,
        "p50_ms": percentile(us, 0.50) / 1000, "p99_ms": percentile(us, 0.99) / 1000,
        "max_ms": us[-1] / 1000,
        "cpu_us_per_request": 1e6 * cpu / max(allowed, 1),
        "redis_cpu_us_per_request": 1e6 * redis_cpu / max(allowed, 1),
    }
    log(f"cost {store}: {result}")
    return result


def distinct_keys(first: int, count: int) -> None:
    """One request for each of `count` new header values, from 4 keep-alive clients, 10 min at
    most. (wrk cannot stop at a count: its main thread sleeps out the whole duration.)"""
    load(4, 600, count, lambda i: {"x-api-client": f"client-{first + i:07d}"})


def memory(args, work: Path, max_keys: int | None) -> dict:
    extra = f", max_keys: {max_keys}" if max_keys else ""
    # A bucket idles out once full again (here after an hour): none does during the run, so
    # the table holds every key up to max_keys.
    filt = ("{ name: rate_limit, key: header, header: x-api-client, requests_per_unit: 10, "
            f"unit: hour{extra} }}")
    proc = start_headway(work / f"memory-{max_keys or 'default'}", args.headway_bin, filt)
    points = []
    try:
        load(2, 5, 200, lambda i: {"x-api-client": "warm"})
        time.sleep(1)
        points.append({"keys": 0, "rss_kb": mem_kb([proc.pid], "VmRSS")})
        step = args.keys // 4
        for start in range(0, args.keys, step):
            a0, t0 = events("allowed"), time.monotonic()
            distinct_keys(start, step)
            allowed = events("allowed") - a0
            if allowed < step:
                log(f"warning: {allowed} allowed for {step} new keys")
            points.append({"keys": start + step, "rss_kb": mem_kb([proc.pid], "VmRSS"),
                           "elapsed_s": time.monotonic() - t0, "allowed": allowed})
            log(f"memory max_keys={max_keys or 'default'}: {start + step} keys, "
                f"VmRSS {points[-1]['rss_kb'] / 1024:.1f} MiB")
        hwm = mem_kb([proc.pid], "VmHWM")
    finally:
        proc.stop()
    return {"max_keys": max_keys or 100_000, "points": points, "hwm_kb": hwm}


def report(results: dict) -> str:
    out = ["### Accuracy: allowed rate under a bounded load",
           "",
           f"{results['clients']} keep-alive clients, {results['seconds']} s or "
           f"{results['max_requests']} requests, `key: route`.",
           "",
           "| configured | burst | offered req/s | allowed | time s | allowed/s | vs configured "
           "| steady (allowed − burst)/s | vs configured |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in results["accuracy"]:
        out.append(f"| {r['rate']}/s | {r['burst']} | {r['offered_per_s']:.0f} | {r['allowed']} "
                   f"| {r['elapsed_s']:.2f} | {r['allowed_per_s']:.1f} | {r['error_pct']:+.2f}% "
                   f"| {r['steady_per_s']:.1f} | {r['steady_error_pct']:+.2f}% |")
    if results["cost"]:
        out += ["", "### Cost: a fixed 5,000 requests/s, nothing refused", "",
                "h2load --h1, 50 keep-alive clients at 100 requests/s each, "
                f"{results['cost_seconds']} s after 1 s of warm-up; Redis on loopback.", "",
                "| counted | requests | req/s | p50 | p99 | max | gateway CPU/request "
                "| Redis CPU/request | store errors |",
                "|---|---|---|---|---|---|---|---|---|"]
        for c in results["cost"]:
            out.append(f"| {c['store']} | {c['requests']} | {c['per_s']:.0f} "
                       f"| {c['p50_ms']:.3f} ms | {c['p99_ms']:.3f} ms | {c['max_ms']:.2f} ms "
                       f"| {c['cpu_us_per_request']:.1f} µs | {c['redis_cpu_us_per_request']:.1f} µs "
                       f"| {c['store_errors']:.0f} |")
    if not results["memory"]:
        return "\n".join(out)
    out += ["", "### Memory: distinct keys (`key: header`, one request per key)", "",
            "| max_keys | " + " | ".join(f"{p['keys']:,} keys" for p in
                                         results["memory"][0]["points"]) + " | growth | VmHWM |",
            "|---" * (len(results["memory"][0]["points"]) + 3) + "|"]
    for m in results["memory"]:
        pts = m["points"]
        growth = (pts[-1]["rss_kb"] - pts[0]["rss_kb"]) / 1024
        out.append(f"| {m['max_keys']:,} | "
                   + " | ".join(f"{p['rss_kb'] / 1024:.1f} MiB" for p in pts)
                   + f" | {growth:+.1f} MiB | {m['hwm_kb'] / 1024:.1f} MiB |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--headway-bin", type=Path, default=REPO / "target/release/headway")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--max-requests", type=int, default=200_000)
    p.add_argument("--rate", type=int, default=200)
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--cost-seconds", type=int, default=10)
    p.add_argument("--tests", default="accuracy,cost,memory")
    args = p.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = BENCH / "results" / f"{stamp}-ratelimit"
    work = Path(f"/tmp/headway-bench-ratelimit-{stamp}")
    backend = Backend(work, BACKEND_IP, BACKEND_H1, BACKEND_H2C, 1, None)
    results = {"clients": args.clients, "seconds": args.seconds,
               "max_requests": args.max_requests, "accuracy": [], "memory": [],
               "cost": [], "cost_seconds": args.cost_seconds,
               "cpu": cpu_model(), "headway_bin": str(args.headway_bin)}
    try:
        if "accuracy" in args.tests:
            for burst in (10, args.rate):
                results["accuracy"].append(accuracy(args, work, args.rate, burst))
        if "cost" in args.tests:
            for store in ("local", "redis"):
                results["cost"].append(cost(args, work, store))
        if "memory" in args.tests:
            for max_keys in (None, args.keys // 10):
                results["memory"].append(memory(args, work, max_keys))
    finally:
        backend.stop()
    table = report(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ratelimit.json").write_text(json.dumps(results, indent=2))
    (out / "ratelimit.md").write_text(table + "\n")
    print(table)
    log(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
