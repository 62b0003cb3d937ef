#!/usr/bin/env python3
"""What the admin dashboard costs the proxied traffic (issue 18).

headway (release build, bench/conf/headway.yaml: one worker, access log off) in front of the
bench nginx backend, found through the bench DNS server. Each round runs, in turn:

  quiet    wrk -t1 -c16 through the gateway, nobody on the admin listener;
  pollers  the same load while 10 pollers each load the page (GET /) once and then GET /stats
           every second on a kept-alive connection, as 10 open dashboards do.

Both read the gateway's CPU time (utime + stime of all its threads, /proc/PID/stat) before and
after the measured wrk run: CPU seconds per 1,000 proxied requests. A third measure, alone:
the gateway CPU of 500 GET /stats, i.e. what one poll costs. Medians over the rounds.
Writes bench/results/<timestamp>-dashboard/ (results.md, results.json, logs).
"""

import argparse
import http.client
import os
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (BENCH, REPO, Backend, Dns, Proc, cpu_model, cpu_seconds, http_get, log,  # noqa: E402
                    render, wait_until)

PROXY, ADMIN = ("127.0.0.1", 18190), ("127.0.0.1", 18191)
DNS_ADDR, DNS_NAME = ("127.0.0.1", 15391), "backend.bench"


def wrk(duration: str, out: Path) -> dict:
    argv = ["wrk", "-t1", "-c16", f"-d{duration}", "-s", str(BENCH / "lib" / "report.lua"),
            f"http://{PROXY[0]}:{PROXY[1]}/"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    out.write_text(res.stdout + res.stderr)
    for line in res.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    raise RuntimeError(f"wrk printed no result: {res.stderr[:300]}")


class Pollers:
    """n dashboards: each loads the page once, then polls /stats every second until stopped."""

    def __init__(self, n: int):
        self.stop = threading.Event()
        self.polls = 0
        self.failures = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(n)]

    def run(self, i: int) -> None:
        conn = http.client.HTTPConnection(*ADMIN, timeout=5)
        paths = iter(["/"])
        time.sleep(i * 0.1)  # browsers opened one after the other, not in lockstep
        while not self.stop.is_set():
            path = next(paths, "/stats")
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(*ADMIN, timeout=5)
            with self.lock:
                self.polls += 1
                self.failures += 0 if ok else 1
            self.stop.wait(1.0)
        conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        for t in self.threads:
            t.join(5)


def start_headway(d: Path, binary: Path) -> Proc:
    d.mkdir(parents=True, exist_ok=True)
    conf = render("headway.yaml", d / "headway.yaml", DIR=d, PROXY_LISTEN=f"{PROXY[0]}:{PROXY[1]}",
                  ADMIN_LISTEN=f"{ADMIN[0]}:{ADMIN[1]}", DNS_ADDR=f"{DNS_ADDR[0]}:{DNS_ADDR[1]}",
                  DNS_NAME=DNS_NAME, UPSTREAM_PORT=18181, HEADWAY_PROTOCOL="http1")
    p = Proc("headway", [str(binary), "-c", str(conf)], d / "headway.log")
    if not wait_until(lambda: http_get(*PROXY)[0] == 200, 20):
        p.stop()
        raise RuntimeError("headway did not proxy:\n" + p.tail())
    return p


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of the process's live threads by name (/proc/PID/task/*/schedstat): pingora
    runs each service on threads of its own, `headway proxy` and `headway admin`."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            ns = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        out[name] = out.get(name, 0.0) + ns / 1e9
    return out


def measure(case: str, d: Path, binary: Path, args) -> dict:
    gw = start_headway(d, binary)
    try:
        wrk(args.warmup, d / "wrk-warmup.txt")
        pollers = Pollers(args.pollers if case == "pollers" else 0)
        with pollers:
            time.sleep(1.0 if case == "pollers" else 0)  # every page loaded before measuring
            polls0 = pollers.polls
            cpu0, th0 = cpu_seconds(gw.pids()), thread_cpu(gw.pid)
            w = wrk(args.duration, d / "wrk.txt")
            cpu1, th1 = cpu_seconds(gw.pids()), thread_cpu(gw.pid)
            polls = pollers.polls - polls0
        errors = sum(w[k] for k in w if k.startswith("errors_"))
        rec = {"case": case, "requests": w["requests"], "rps": w["requests"] / (w["duration_us"] / 1e6),
               "cpu_s": cpu1 - cpu0, "cpu_ms_per_1k": (cpu1 - cpu0) * 1e6 / w["requests"],
               "polls": polls, "poll_failures": pollers.failures, "wrk_errors": errors,
               "p99_us": w["p99_us"],
               "proxy_ms_per_1k": (th1.get("headway proxy", 0) - th0.get("headway proxy", 0))
               * 1e6 / w["requests"],
               "admin_ms": (th1.get("headway admin", 0) - th0.get("headway admin", 0)) * 1e3}
        if case == "quiet":
            # One poll's cost, alone: 500 GET /stats on one connection, nothing else running.
            conn = http.client.HTTPConnection(*ADMIN, timeout=5)

            def cpu_ms_each(path: str, n: int) -> float:
                """The gateway's CPU for one `GET path`, over n on the kept-alive conn."""
                c0 = sum(thread_cpu(gw.pid).values())
                for _ in range(n):
                    conn.request("GET", path)
                    conn.getresponse().read()
                return (sum(thread_cpu(gw.pid).values()) - c0) * 1000 / n

            rec["stats_cpu_ms_each"] = cpu_ms_each("/stats", 500)
            # One page load (server-rendered HTML), alone too.
            rec["page_cpu_ms_each"] = cpu_ms_each("/", 100)
            rec["stats_bytes"] = len(json.dumps(json.loads(http_get(*ADMIN, "/stats")[1])))
            conn.close()
        return rec
    finally:
        gw.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--warmup", default="2s")
    ap.add_argument("--pollers", type=int, default=10)
    ap.add_argument("--smoke", action="store_true", help="1 round of 2 s runs")
    ap.add_argument("--binary", type=Path, help="headway to measure (default: "
                    "$CARGO_TARGET_DIR or target, /release/headway); headless-dns beside it")
    args = ap.parse_args()
    if args.smoke:
        args.rounds, args.duration, args.warmup = 1, "2s", "1s"
    binary = args.binary or Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "release" / "headway"
    dns_bin = binary.parent / "headless-dns"
    out = REPO / "bench" / "results" / (time.strftime("%Y%m%d-%H%M%S") + "-dashboard")
    out.mkdir(parents=True)
    backend = Backend(out, "127.0.10.1", 18181, 18182, 2, None)
    dns = Dns(out, dns_bin, DNS_ADDR[0], DNS_ADDR[1], {DNS_NAME: ["127.0.10.1"]}, None)
    records = []
    try:
        for r in range(1, args.rounds + 1):
            for case in ("quiet", "pollers"):
                rec = measure(case, out / f"r{r}-{case}", binary, args)
                rec["round"] = r
                records.append(rec)
                log(f"round {r} {case:8}: {rec['rps']:,.0f} req/s, "
                    f"{rec['cpu_ms_per_1k']:.1f} ms CPU per 1k requests, {rec['polls']} polls")
    finally:
        dns.stop()
        backend.stop()

    def med(case, key):
        return statistics.median(r[key] for r in records if r["case"] == case and key in r)

    q, p = med("quiet", "cpu_ms_per_1k"), med("pollers", "cpu_ms_per_1k")
    pq, pp = med("quiet", "proxy_ms_per_1k"), med("pollers", "proxy_ms_per_1k")
    spread = {c: [round(r["cpu_ms_per_1k"], 1) for r in records if r["case"] == c]
              for c in ("quiet", "pollers")}
    pspread = {c: [round(r["proxy_ms_per_1k"], 1) for r in records if r["case"] == c]
               for c in ("quiet", "pollers")}
    each = med("quiet", "stats_cpu_ms_each")
    lines = [
        ("**SMOKE RUN — not results**\n\n" if args.smoke else "")
        + f"# Dashboard cost ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{args.rounds} rounds, medians)\n",
        f"- machine: {cpu_model()}, {os.cpu_count()} CPUs",
        f"- load: `wrk -t1 -c16 -d{args.duration}` keep-alive GET / through headway "
        f"({binary.parent.name} build, 1 worker) to nginx; pollers: {args.pollers} × (GET / once, then GET /stats every 1 s)",
        "",
        "| case | req/s | gateway CPU ms per 1k requests (rounds) | proxy thread CPU ms per 1k (rounds) "
        "| admin thread CPU ms in the run | polls in the run |",
        "|---|---:|---:|---:|---:|---:|",
        f"| no dashboard open | {med('quiet', 'rps'):,.0f} | **{q:.1f}** {spread['quiet']} | "
        f"**{pq:.1f}** {pspread['quiet']} | {med('quiet', 'admin_ms'):.1f} | 0 |",
        f"| {args.pollers} dashboards polling | {med('pollers', 'rps'):,.0f} | **{p:.1f}** "
        f"{spread['pollers']} | **{pp:.1f}** {pspread['pollers']} | {med('pollers', 'admin_ms'):.1f} | "
        f"{med('pollers', 'polls'):.0f} |",
        f"| difference | | {p - q:+.1f} ({(p - q) / q * 100:+.1f}%) | {pp - pq:+.1f} "
        f"({(pp - pq) / pq * 100:+.1f}%) | | |",
        "",
        f"Alone (one kept-alive connection, nothing else running), one `GET /stats` costs the "
        f"gateway **{each * 1000:.0f} µs** of CPU ({med('quiet', 'stats_bytes'):,.0f} bytes of JSON, "
        f"one cluster, one backend) and one `GET /` (the page) **{med('quiet', 'page_cpu_ms_each') * 1000:.0f} µs**. "
        f"Under load, the admin thread used {med('pollers', 'admin_ms'):.1f} ms of CPU for "
        f"{med('pollers', 'polls'):.0f} polls in {args.duration} (a poll then also pays the "
        f"admin thread's wake-up).",
    ]
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(records, indent=1))
    print(text)
    log(f"written to {out}")


if __name__ == "__main__":
    main()
