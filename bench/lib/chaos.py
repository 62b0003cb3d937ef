"""Pods dying, side by side: the same pod-death scenarios against headway, Envoy and HAProxy, each
in front of three stock nginx "pods" on 127.0.0.11-13 found by DNS through services/headless-dns
(records changed at run time through its --zone-file). Driven by bench/chaos.sh (which installs
the peers and builds headway); see bench/README.md.

For every run, for every client count, for every scenario, for every peer: start fresh pods, set
DNS to them, start the peer, check that it routes to all three, start the load (Python threads,
one keep-alive connection each, no client retry), play the scenario, stop the load, record every
request's outcome, stop everything. Medians over runs go in results.md and results.json.

Standard library only. Every address is on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import atexit
import gzip
import http.client
import json
import math
import os
import platform
import random
import re
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BENCH, REPO, Proc, cpu_model, http_get, log, port_free, render, tool_version, wait_until,
)

DNS_NAME = "service1.chaos.test"
REQUEST_PATH = "/service/1"
POD_NET = "127.0.0."
FIRST_PODS = [11, 12, 13]
SPARE_PODS = [14, 15, 16]
BODY = re.compile(rb"pod 127\.0\.0\.(\d+)\n")

# Everything this process started, stopped at the end whatever happens (Ctrl-C, error, SIGTERM).
STARTED: list[Proc] = []


def start_proc(name, argv, logfile, **kw) -> Proc:
    p = Proc(name, argv, logfile, **kw)
    STARTED.append(p)
    return p


def stop_proc(p: Proc, timeout: float = 5.0) -> int | None:
    try:
        os.killpg(p.pid, signal.SIGCONT)  # a stopped (SIGSTOP) pod cannot act on SIGTERM
    except OSError:
        pass
    code = p.stop(timeout)
    if p in STARTED:
        STARTED.remove(p)
    return code


def stop_everything() -> None:
    for p in list(reversed(STARTED)):
        try:
            stop_proc(p, 3.0)
        except Exception as e:  # noqa: BLE001 - keep stopping the others
            log(f"stopping {p.name} (pid {p.pid}): {e!r}")


atexit.register(stop_everything)


def ip_of(n: int) -> str:
    return f"{POD_NET}{n}"


# ---------------------------------------------------------------------------------------------
# DNS: a zone file that headless-dns reads again whenever it changes


def dns_a(ip: str, port: int, name: str, timeout: float = 0.5) -> tuple[int, list[str]]:
    """One A query over UDP: (rcode, addresses)."""
    qid = int.from_bytes(os.urandom(2), "big")
    msg = qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    msg += b"".join(len(p).to_bytes(1, "big") + p.encode() for p in name.strip(".").split("."))
    msg += b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(msg, (ip, port))
        reply, _ = s.recvfrom(65535)
    rcode = reply[3] & 0x0F
    ancount = int.from_bytes(reply[6:8], "big")

    def skip_name(i: int) -> int:
        while True:
            n = reply[i]
            if n == 0:
                return i + 1
            if n & 0xC0 == 0xC0:
                return i + 2
            i += n + 1

    i = skip_name(12) + 4
    ips = []
    for _ in range(ancount):
        i = skip_name(i)
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", reply[i:i + 10])
        i += 10
        if rtype == 1 and rdlen == 4:
            ips.append(socket.inet_ntoa(reply[i:i + 4]))
        i += rdlen
    return rcode, sorted(ips)


class ChaosDns:
    """headless-dns --zone-file: records are set by rewriting the file (atomically); set() returns
    once the server answers the new records, so event times are when DNS really changed."""

    def __init__(self, binary: Path, port: int, workdir: Path, logdir: Path):
        self.binary, self.ip, self.port = binary, "127.0.0.1", port
        self.zone = workdir / "zone"
        self.logdir = logdir
        self.proc: Proc | None = None
        self.current: list[int] = []
        self._write([])

    def _write(self, pods: list[int]) -> None:
        tmp = self.zone.with_suffix(".tmp")
        tmp.write_text(f"{DNS_NAME}={','.join(ip_of(n) for n in pods)}\n")
        os.replace(tmp, self.zone)
        self.current = list(pods)

    def answers(self) -> tuple[int, list[str]] | None:
        try:
            return dns_a(self.ip, self.port, DNS_NAME)
        except OSError:
            return None

    def _serves(self, pods: list[int]) -> bool:
        got = self.answers()
        if got is None:
            return False
        rcode, ips = got
        if not pods:
            return rcode == 3  # NXDOMAIN, as cluster DNS answers a service with no ready pod
        return rcode == 0 and ips == sorted(ip_of(n) for n in pods)

    def start(self) -> None:
        if self.proc and self.proc.alive():
            return
        if not wait_until(lambda: port_free(self.ip, self.port), 10):
            raise RuntimeError(f"DNS port {self.ip}:{self.port} is in use")
        argv = [str(self.binary), "--listen", f"{self.ip}:{self.port}", "--ttl", "1",
                "--zone-file", str(self.zone)]
        self.proc = start_proc("headless-dns", argv, self.logdir / "dns.log")
        if not wait_until(lambda: self._serves(self.current), 10, 0.05):
            raise RuntimeError("headless-dns does not answer:\n" + self.proc.tail())

    def stop(self) -> None:
        if self.proc:
            stop_proc(self.proc)
            self.proc = None

    def running(self) -> bool:
        return bool(self.proc and self.proc.alive())

    def set(self, pods: list[int]) -> None:
        self._write(pods)
        if self.running() and not wait_until(lambda: self._serves(pods), 5, 0.01):
            raise RuntimeError(f"DNS does not answer {pods} 5 s after the zone file changed")


# ---------------------------------------------------------------------------------------------
# pods: one nginx master + one worker each, on its own loopback address


class Pod:
    def __init__(self, ctx: "Ctx", n: int, logdir: Path):
        self.n, self.ip, self.port = n, ip_of(n), ctx.args.pod_port
        self.dir = Path(tempfile.mkdtemp(prefix=f"pod{n}-", dir=ctx.tmp))
        conf = render("chaos-pod-nginx.conf", self.dir / "nginx.conf", DIR=self.dir,
                      POD_IP=self.ip, POD_PORT=self.port, ERROR_LOG=logdir / f"pod-{n}.log")
        if not wait_until(lambda: port_free(self.ip, self.port), 10):
            raise RuntimeError(f"{self.ip}:{self.port} is in use")
        self.proc = start_proc(f"pod {self.ip}", [
            "nginx", "-p", str(self.dir), "-c", str(conf), "-e", str(logdir / f"pod-{n}.log"),
            "-g", "daemon off;"], logdir / f"pod-{n}.log")

    def ready(self, timeout: float = 10) -> None:
        ok = wait_until(lambda: http_get(self.ip, self.port, "/healthz", 1)[0] == 200, timeout, 0.02)
        if not ok:
            raise RuntimeError(f"pod {self.ip} does not answer /healthz:\n" + self.proc.tail())

    def signal_group(self, sig: int) -> None:
        """master and worker: nginx runs in its own session, so its process group is its own."""
        os.killpg(self.proc.pid, sig)

    def term(self) -> None:
        """SIGTERM to the master, as the kubelet sends it: nginx's fast shutdown closes every
        connection at once, idle kept-alive ones included."""
        os.kill(self.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        stop_proc(self.proc, 3.0)


class ResetServer:
    """A pod's replacement that accepts connections, waits for the request (at most 1 s) and
    closes with SO_LINGER 0: the peer gets an RST after it sent its request. It binds beside the
    pod's nginx (both SO_REUSEPORT), so once nginx is killed every connect reaches it: no moment
    of refused connects between the two."""

    def __init__(self, n: int, port: int, logdir: Path):
        self.n, self.ip = n, ip_of(n)
        self.log = logdir / f"rst-{n}.log"
        self.proc = start_proc(f"rst {self.ip}", [sys.executable, str(Path(__file__).resolve()),
                                                  "--rst-server", f"{self.ip}:{port}"], self.log)

        def listening():
            return self.proc.alive() and "listening" in self.log.read_text(errors="replace")
        if not wait_until(listening, 5, 0.01):
            raise RuntimeError(f"reset server on {self.ip}:{port} did not start:\n"
                               + self.proc.tail())

    def stop(self) -> int | None:
        """Stops it; returns how many connections it reset."""
        stop_proc(self.proc, 3.0)
        counts = re.findall(r"^(\d+) connections reset", self.log.read_text(errors="replace"),
                            re.M)
        return int(counts[-1]) if counts else None


def rst_server(addr: str) -> int:
    ip, port = addr.rsplit(":", 1)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # beside the pod's nginx
    srv.bind((ip, int(port)))
    srv.listen(1024)
    srv.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ, None)
    deadlines: dict[socket.socket, float] = {}
    resets = 0

    def reset(c: socket.socket) -> None:
        nonlocal resets
        sel.unregister(c)
        deadlines.pop(c, None)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        resets += 1

    def final(signum, frame):
        print(f"{resets} connections reset (final)", flush=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, final)
    print(f"rst-server listening on {addr}: accept, wait for the request, close with RST",
          flush=True)
    last_report = time.monotonic()
    while True:
        for key, _ in sel.select(timeout=0.05):
            if key.data is None:
                try:
                    c, _ = srv.accept()
                except BlockingIOError:
                    continue
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ, "conn")
                deadlines[c] = time.monotonic() + 1.0
            else:
                reset(key.fileobj)  # the request arrived (unread: the close sends RST anyway)
        now = time.monotonic()
        for c, dl in list(deadlines.items()):
            if dl < now:
                reset(c)
        if now - last_report > 1:
            print(f"{resets} connections reset", flush=True)
            last_report = now


# ---------------------------------------------------------------------------------------------
# peers


class Peer:
    name = "?"
    port = 0

    def __init__(self, ctx: "Ctx", port: int, admin_port: int):
        self.ctx, self.port, self.admin_port = ctx, port, admin_port

    def start(self, d: Path) -> Proc:
        raise NotImplementedError

    def snapshot(self, d: Path) -> None:
        """The peer's own view of its cluster at the end of the run (evidence)."""

    def version(self) -> str:
        return "?"


class Headway(Peer):
    name = "headway"
    settings = ("threads 1; dns_refresh_rate 1s; health_check http /healthz every 1s, timeout "
                "500ms, unhealthy 2, healthy 1; retries 2 on [connect-failure, reset, "
                "gateway-error], per_try_timeout 1s, retry_budget default (20 %, at least 3; failover from a lone failing pod not rationed); connect_timeout 1s; "
                "outlier_detection 5 in a row, 30s, max 50 %; keep-alive pool")

    def start(self, d):
        a = self.ctx.args
        conf = render(a.headway_template, d / "headway.yaml", DIR=d,
                      PROXY_LISTEN=f"127.0.0.1:{self.port}",
                      ADMIN_LISTEN=f"127.0.0.1:{self.admin_port}",
                      DNS_ADDR=f"127.0.0.1:{a.dns_port}", DNS_NAME=DNS_NAME,
                      POD_PORT=a.pod_port, ACCESS_LOG="true" if a.access_log else "false")
        return start_proc("headway", [str(self.ctx.headway_bin), "-c", str(conf)],
                          d / "proxy.log", env={"RUST_LOG": a.headway_log},
                          stop_signal=signal.SIGINT)

    def snapshot(self, d):
        status, body, _ = http_get("127.0.0.1", self.admin_port, "/clusters", 3)
        (d / "clusters.json").write_text(body)
        status, body, _ = http_get("127.0.0.1", self.admin_port, "/metrics", 3)
        (d / "metrics.txt").write_text(body)
        stats = {}
        for line in body.splitlines():
            for series in ("headway_panics_total", "headway_upstream_retries_total",
                           "headway_retry_budget_exhausted_total",
                           "headway_outlier_ejections_total"):
                if line.startswith(series):
                    stats[series] = stats.get(series, 0) + float(line.rsplit(" ", 1)[1])
        return stats

    def version(self):
        def git(*a):
            return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True,
                                  text=True).stdout.strip()
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src", "Cargo.toml",
                    "Cargo.lock")
        return f"{git('rev-parse', '--short', 'HEAD')}{' + uncommitted src changes' if dirty else ''}"


class Envoy(Peer):
    name = "envoy"
    settings = ("--concurrency 1; STRICT_DNS, c-ares at the chaos DNS server, dns_refresh_rate 1s; "
                "health check http /healthz every 1s (no_traffic_interval 1s), timeout 0.5s, "
                "unhealthy 2, healthy 1; ignore_health_on_host_removal, "
                "ignore_new_hosts_until_first_hc; retry_on connect-failure,reset,refused-stream,"
                "gateway-error, num_retries 2, per_try_timeout 1s, previous_hosts predicate "
                "(host_selection_retry_max_attempts 5); max_retries 1000; connect_timeout 1s; "
                "outlier detection consecutive_5xx 5, 30s, max 50 %")

    def start(self, d):
        a = self.ctx.args
        conf = render("chaos-envoy.yaml", d / "envoy.yaml", DIR=d, ADMIN_PORT=self.admin_port,
                      PROXY_PORT=self.port, DNS_IP="127.0.0.1", DNS_PORT=a.dns_port,
                      DNS_NAME=DNS_NAME, POD_PORT=a.pod_port)
        return start_proc("envoy", [str(self.ctx.envoy_bin), "-c", str(conf), "--concurrency", "1",
                                    "--disable-hot-restart", "--log-level", "warn"],
                          d / "proxy.log")

    def snapshot(self, d):
        status, body, _ = http_get("127.0.0.1", self.admin_port, "/clusters", 3)
        (d / "clusters.txt").write_text(body)

    def version(self):
        text = tool_version([str(self.ctx.envoy_bin), "--version"])
        m = re.search(r"/(\d+\.\d+\.\d+)/", text)
        return m.group(1) if m else text


class HAProxy(Peer):
    name = "haproxy"
    settings = ("nbthread 1; server-template pod 1-8 with resolvers (hold valid 1s, obsolete 0s, "
                "nx 1s; timeout/refused/other 3600s: the last pods are kept while DNS is down); "
                "check inter 1s fall 2 rise 1, option httpchk GET /healthz; retries 2, retry-on "
                "conn-failure empty-response junk-response response-timeout 0rtt-rejected 502 503 "
                "504, option redispatch 1; timeout server 1s (per try), timeout connect 1s; "
                "observe layer4 error-limit 5 on-error mark-down; http-reuse always")

    def start(self, d):
        a = self.ctx.args
        self.sock = d / "haproxy.sock"
        conf = render("chaos-haproxy.cfg", d / "haproxy.cfg", DIR=d,
                      DNS_ADDR=f"127.0.0.1:{a.dns_port}", PROXY_LISTEN=f"127.0.0.1:{self.port}",
                      DNS_NAME=DNS_NAME, POD_PORT=a.pod_port)
        return start_proc("haproxy", ["haproxy", "-db", "-f", str(conf)], d / "proxy.log")

    def snapshot(self, d):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(3)
            s.connect(str(self.sock))
            s.sendall(b"show servers state service1\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        (d / "servers-state.txt").write_bytes(out)

    def version(self):
        m = re.search(r"version (\S+)", tool_version(["haproxy", "-v"]))
        return m.group(1) if m else "?"


PEERS = {p.name: p for p in (Headway, Envoy, HAProxy)}


# ---------------------------------------------------------------------------------------------
# load: threads, one keep-alive connection each, no client retry


OK = "ok"
SLOW_S = 0.9  # a request this slow waited out a per-try timeout (1 s), or worse
TRUNCATED = "truncated: the response had started"


def first_line(body: bytes) -> str:
    for line in body.decode(errors="replace").splitlines():
        line = line.strip()
        if line:
            return line[:100]
    return "(empty body)"


class Load:
    def __init__(self, port: int, clients: int, timeout: float, max_requests: int,
                 max_seconds: float):
        self.port, self.clients, self.timeout = port, clients, timeout
        self.per_thread_cap = max(1, max_requests // clients)
        self.max_seconds = max_seconds
        self.stop_event = threading.Event()
        self.records: list[list[tuple]] = [[] for _ in range(clients)]
        self.threads: list[threading.Thread] = []
        self.t0 = 0.0

    def start(self) -> float:
        self.t0 = time.monotonic()
        for i in range(self.clients):
            t = threading.Thread(target=self._client, args=(i,), daemon=True, name=f"client-{i}")
            self.threads.append(t)
            t.start()
        return self.t0

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(self.timeout + 5)

    def _client(self, i: int) -> None:
        out = self.records[i]
        t0, port, timeout = self.t0, self.port, self.timeout
        hard_deadline = t0 + self.max_seconds
        conn: http.client.HTTPConnection | None = None
        n = 0
        while not self.stop_event.is_set() and n < self.per_thread_cap:
            start = time.monotonic()
            if start > hard_deadline:
                break
            n += 1
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            fresh = conn.sock is None
            conn_kind = "new" if fresh else "reused"
            pod = 0
            stage = "send"
            try:
                conn.request("GET", REQUEST_PATH)
                stage = "response"
                resp = conn.getresponse()
                stage = "body"
                status = resp.status
                try:
                    body = resp.read()
                except (http.client.IncompleteRead, ConnectionError, TimeoutError, OSError):
                    outcome = TRUNCATED if status == 200 else f"{status} (truncated body)"
                    conn.close()
                    conn = None
                else:
                    if status == 200:
                        m = BODY.fullmatch(body)
                        if m:
                            outcome, pod = OK, int(m.group(1))
                        else:
                            outcome = f"200 with a wrong body: {first_line(body)}"
                    else:
                        outcome = f"{status} {first_line(body)}"
            except ConnectionRefusedError:
                outcome = "gateway refused the connection"
                conn.close()
                conn = None
            except http.client.RemoteDisconnected:
                outcome = f"connection closed before the response ({conn_kind} connection)"
                conn.close()
                conn = None
            except ConnectionResetError:
                outcome = f"connection reset before the response ({conn_kind} connection)"
                conn.close()
                conn = None
            except BrokenPipeError:
                outcome = f"connection closed while sending ({conn_kind} connection)"
                conn.close()
                conn = None
            except (TimeoutError, socket.timeout):
                outcome = f"timeout ({timeout:g} s, client side, at {stage})"
                conn.close()
                conn = None
            except (http.client.HTTPException, OSError) as e:
                outcome = f"{type(e).__name__}: {str(e)[:80]}"
                conn.close()
                conn = None
            end = time.monotonic()
            out.append((start - t0, end - start, outcome, pod))
        if conn is not None:
            conn.close()

    def all_records(self) -> list[tuple]:
        rows = [r for per in self.records for r in per]
        rows.sort(key=lambda r: r[0])
        return rows


# ---------------------------------------------------------------------------------------------
# a run: pods, DNS and a peer under load while a scenario plays


class Timing:
    def __init__(self, smoke: bool):
        self.pre = 1.5 if smoke else 3.0          # steady load before the event
        self.post = 3.0 if smoke else 5.0         # after it
        self.dns_down = 5.0 if smoke else 30.0    # dns-down-30s
        self.grace = 1.0                          # removed from DNS → SIGTERM (a refresh later)
        # The event comes 0-1 s later than `pre`, at random: the peers refresh DNS and probe
        # every second from their own start, so a fixed offset would always hit the same phase
        # of their timers and every convergence time would come out the same.
        self.jitter = 1.0
        self.zero = 3.0 if smoke else 5.0         # zero-and-back: time at zero
        self.rolling_step = 2.0 if smoke else 3.0


class Run:
    def __init__(self, ctx: "Ctx", peer: Peer, scenario: str, clients: int, rnd: int, d: Path):
        self.ctx, self.peer, self.scenario, self.clients, self.rnd, self.d = (
            ctx, peer, scenario, clients, rnd, d)
        self.T = ctx.timing
        self.pods: dict[int, Pod] = {}
        self.resets: list[ResetServer] = []
        self.events: list[tuple[float, str]] = []
        self.marks: dict[str, float] = {}
        self.load: Load | None = None
        self.t0 = time.monotonic()
        self.resets_sent: int | None = None  # reset: connections the peer opened to the RST pod
        self.jitter_s: float | None = None
        self.peer_stats: dict = {}  # what the peer itself counted (headway: panics)

    # timeline
    def now(self) -> float:
        return time.monotonic() - self.t0

    def event(self, text: str, mark: str | None = None) -> float:
        t = self.now()
        self.events.append((round(t, 3), text))
        if mark:
            self.marks[mark] = t
        return t

    def sleep(self, s: float) -> None:
        time.sleep(s)

    def pre(self) -> None:
        """The steady load before the event: `pre` plus a random part of a refresh interval."""
        self.jitter_s = round(random.uniform(0, self.T.jitter), 3)
        time.sleep(self.T.pre + self.jitter_s)

    # pods and DNS
    def start_pods(self, ns: list[int]) -> None:
        for n in ns:
            self.pods[n] = Pod(self.ctx, n, self.d)
        for n in ns:
            self.pods[n].ready()

    def dns(self, ns: list[int], text: str | None = None, mark: str | None = None) -> float:
        self.ctx.dns.set(ns)
        return self.event(text or f"DNS: {','.join(ip_of(n) for n in ns) or 'NXDOMAIN'}", mark)

    def live_pods(self) -> list[int]:
        return sorted(n for n, p in self.pods.items() if p.proc.alive())

    def teardown(self) -> None:
        for r in self.resets:
            self.resets_sent = r.stop()
        for p in self.pods.values():
            p.stop()
        if not self.ctx.dns.running():
            self.ctx.dns.start()


# --- scenarios: each plays while the load runs; run.marks["event"] is the event measured from


def sc_kill_term(run: Run) -> None:
    T = run.T
    run.pre()
    run.pods[11].term()
    run.event("SIGTERM pod .11 (nginx fast shutdown: every connection closed at once)", "event")
    run.sleep(0.5)
    run.dns([12, 13], "DNS: .11 removed (0.5 s after SIGTERM)")
    run.sleep(T.post)


def sc_kill_9(run: Run) -> None:
    T = run.T
    run.pre()
    run.pods[11].signal_group(signal.SIGKILL)
    run.event("SIGKILL pod .11 (master and worker); its record stays in DNS", "event")
    run.sleep(T.post + 1)


def sc_hang(run: Run) -> None:
    T = run.T
    run.pre()
    run.pods[11].signal_group(signal.SIGSTOP)
    run.event("SIGSTOP pod .11 (master and worker): connects complete in the kernel, nothing "
              "answers; its record stays in DNS", "event")
    run.sleep(T.post + 1)
    # SIGCONT comes after the load stops, in teardown (stop_proc sends it first)


def sc_reset(run: Run) -> None:
    T = run.T
    run.pre()
    run.resets.append(ResetServer(11, run.ctx.args.pod_port, run.d))
    run.event("reset server listening beside .11's nginx (new connections split between them)")
    run.pods[11].signal_group(signal.SIGKILL)
    run.event("pod .11's nginx SIGKILLed; a server already listening on its ip:port (both "
              "SO_REUSEPORT) accepts, waits for the request and closes with RST (SO_LINGER 0); "
              "its record stays in DNS", "event")
    run.sleep(T.post + 1)


def sc_dns_down(run: Run) -> None:
    T = run.T
    run.pre()
    run.ctx.dns.stop()
    run.event(f"DNS server stopped for {T.dns_down:g} s (port closed: queries get ICMP "
              "unreachable)", "event")
    run.sleep(T.dns_down)
    run.ctx.dns.start()
    run.event("DNS server started again", "dns_back")
    run.sleep(T.post)


def sc_churn(run: Run) -> None:
    T = run.T
    run.pre()
    run.start_pods(SPARE_PODS)
    run.dns([11, 12, 13, 14, 15, 16], "3 → 6: pods .14-.16 started, then added to DNS", "up")
    run.sleep(T.post)
    run.dns([11], "6 → 1: .12-.16 removed from DNS", "event")
    run.sleep(T.grace)
    for n in (12, 13, 14, 15, 16):
        run.pods[n].term()
    run.event(f"SIGTERM .12-.16 ({T.grace:g} s after they left DNS)")
    run.sleep(T.post)


def sc_replace(run: Run) -> None:
    T = run.T
    run.pre()
    run.start_pods([14, 15])
    run.dns([13, 14, 15], "{11,12,13} → {13,14,15} (new pods started first)", "event")
    run.sleep(T.grace)
    for n in (11, 12):
        run.pods[n].term()
    run.event(f"SIGTERM .11 and .12 ({T.grace:g} s after they left DNS)")
    run.sleep(T.post)


def sc_zero_and_back(run: Run) -> None:
    T = run.T
    run.pre()
    run.dns([], "scaled to zero: records removed (NXDOMAIN)", "event")
    run.sleep(T.grace)
    for n in FIRST_PODS:
        run.pods[n].term()
    run.event(f"SIGTERM .11-.13 ({T.grace:g} s later)")
    run.sleep(T.zero)
    run.start_pods(SPARE_PODS)
    run.dns(SPARE_PODS, "back to 3: pods .14-.16 started, then added to DNS", "back")
    run.sleep(T.post)


def sc_rolling(run: Run) -> None:
    T = run.T
    run.pre()
    current = list(FIRST_PODS)
    for i, (old, new) in enumerate(zip(FIRST_PODS, SPARE_PODS)):
        run.start_pods([new])
        current = [n for n in current if n != old] + [new]
        run.ctx.dns.set(current)
        run.pods[old].term()
        run.event(f"rolling: pod .{new} up and in DNS; .{old} out of DNS and SIGTERM at once",
                  "event" if i == 0 else None)
        run.sleep(T.rolling_step)
    run.sleep(T.post - T.rolling_step if T.post > T.rolling_step else 0)


SCENARIOS = {
    "kill-term": (sc_kill_term, "SIGTERM 1 of 3 pods (nginx fast shutdown closes every "
                  "connection, idle kept-alive ones too); its DNS record removed 0.5 s later"),
    "kill-9": (sc_kill_9, "SIGKILL 1 of 3 pods (master and worker); record left in DNS (a "
               "crashed container stays listed until its readiness probe fails)"),
    "hang": (sc_hang, "SIGSTOP 1 of 3 pods (master and worker): connects succeed in the kernel "
             "backlog, nothing answers; record left; SIGCONT after the load"),
    "reset": (sc_reset, "a server binds 1 of 3 pods' ip:port beside its nginx (SO_REUSEPORT), "
              "then that nginx is SIGKILLed: every new connection is accepted, its request read, "
              "and closed with RST (SO_LINGER 0); record left"),
    "dns-down-30s": (sc_dns_down, "the DNS server stopped for 30 s under load (its port closed), "
                     "then started again; pods untouched"),
    "churn": (sc_churn, "3 → 6 → 1 pods: added pods start before they enter DNS; removed ones "
              "leave DNS, then get SIGTERM 1 s (a refresh) later"),
    "replace": (sc_replace, "records {.11,.12,.13} → {.13,.14,.15} at once (new pods started "
                "first); .11 and .12 get SIGTERM 1 s later"),
    "zero-and-back": (sc_zero_and_back, "records removed (NXDOMAIN), pods SIGTERMed 1 s later; "
                      "5 s at zero; then 3 new pods (.14-.16) start and enter DNS"),
    "rolling": (sc_rolling, "rolling restart, the Kubernetes deploy case: a new pod starts and "
                "enters DNS, the old one leaves DNS and gets SIGTERM at the same moment; 3 s; "
                "next (3 pods)"),
}


def planned_seconds(scenario: str, T: Timing) -> float:
    return {
        "kill-term": T.pre + 0.5 + T.post,
        "kill-9": T.pre + T.post + 1,
        "hang": T.pre + T.post + 1,
        "reset": T.pre + T.post + 1,
        "dns-down-30s": T.pre + T.dns_down + T.post,
        "churn": T.pre + 2 * T.post + T.grace + 0.3,
        "replace": T.pre + T.grace + T.post + 0.2,
        "zero-and-back": T.pre + T.grace + T.zero + T.post + 0.3,
        "rolling": T.pre + 3 * T.rolling_step + max(T.post - T.rolling_step, 0) + 0.3,
    }[scenario]


# ---------------------------------------------------------------------------------------------
# analysis of one run


def p_quantile(sorted_vals: list[float], q: float) -> float | None:
    """Nearest rank."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, math.ceil(q * len(sorted_vals)) - 1))
    return sorted_vals[k]


def analyse(run: Run, rows: list[tuple]) -> dict:
    """rows: (t_start, duration, outcome, pod) with t_start relative to the load's start."""
    m = run.marks
    load_t0 = run.load.t0 - run.t0  # run-relative time of the load's start
    # put every request on the run's timeline
    rows = [(s + load_t0, d, o, p) for s, d, o, p in rows]
    res: dict = {}
    n = len(rows)
    ok = sum(1 for r in rows if r[2] == OK)
    truncated = sum(1 for r in rows if r[2] == TRUNCATED)
    zero_window = None
    if run.scenario == "zero-and-back" and "event" in m and "back" in m:
        first_ok_back = next((s + d for s, d, o, p in rows if o == OK and s + d >= m["back"]),
                             None)
        zero_window = (m["event"], first_ok_back if first_ok_back is not None else float("inf"))
    failures = [r for r in rows if r[2] not in (OK, TRUNCATED)]
    at_zero = []
    if zero_window:
        at_zero = [r for r in failures if zero_window[0] <= r[0] < zero_window[1]]
        failures = [r for r in failures if not (zero_window[0] <= r[0] < zero_window[1])]
    durations = sorted(r[1] for r in rows)
    span = (max(r[0] + r[1] for r in rows) - min(r[0] for r in rows)) if rows else 0
    res.update(requests=n, ok=ok, failed=len(failures), truncated=truncated,
               rps=round(n / span) if span else 0,
               p50_ms=round(p_quantile(durations, 0.50) * 1000, 2) if durations else None,
               p99_ms=round(p_quantile(durations, 0.99) * 1000, 2) if durations else None,
               max_ms=round(durations[-1] * 1000, 1) if durations else None,
               kinds=dict(Counter(r[2] for r in failures).most_common()),
               truncated_kinds={TRUNCATED: truncated} if truncated else {},
               pods_served=dict(sorted(Counter(f".{r[3]}" for r in rows if r[2] == OK).items())))
    if zero_window:
        res["at_zero_failed"] = len(at_zero)
        res["at_zero_kinds"] = dict(Counter(r[2] for r in at_zero).most_common())
    ev = m.get("event")
    if ev is not None and failures:
        res["first_failure_s"] = round(min(r[0] for r in failures) - ev, 3)
        res["last_failure_s"] = round(max(r[0] + r[1] for r in failures) - ev, 3)
    metrics: dict = {}

    def first_ok_from(pods: set[int], after: float) -> dict[int, float]:
        seen: dict[int, float] = {}
        for s, d, o, p in rows:
            if o == OK and p in pods and p not in seen and s + d >= after:
                seen[p] = s + d - after
        return seen

    def last_ok_from(pods: set[int], after: float) -> float | None:
        ends = [s + d for s, d, o, p in rows if o == OK and p in pods and s + d >= after]
        return round(max(ends) - after, 3) if ends else None

    if run.scenario == "churn" and "up" in m and "event" in m:
        seen = first_ok_from({14, 15, 16}, m["up"])
        metrics["new_pods_serving_s"] = round(max(seen.values()), 3) if len(seen) == 3 else None
        metrics["removed_last_served_s"] = last_ok_from({12, 13, 14, 15, 16}, m["event"])
    if run.scenario == "replace" and "event" in m:
        seen = first_ok_from({14, 15}, m["event"])
        metrics["new_pods_serving_s"] = round(max(seen.values()), 3) if len(seen) == 2 else None
        metrics["converged_s"] = last_ok_from({11, 12}, m["event"])
    if run.scenario == "zero-and-back" and "back" in m:
        seen = first_ok_from({14, 15, 16}, m["back"])
        metrics["recovery_first_200_s"] = round(min(seen.values()), 3) if seen else None
        metrics["recovery_all_pods_s"] = round(max(seen.values()), 3) if len(seen) == 3 else None
    # requests that waited out a per-try timeout (1 s) or more: a hung pod's cost, and how long
    # the peer kept sending to it
    slow = [r for r in rows if r[1] >= SLOW_S]
    metrics["slow_requests"] = len(slow)
    if slow and ev is not None:
        metrics["last_slow_start_s"] = round(max(r[0] for r in slow) - ev, 3)
    if run.scenario == "rolling" and "event" in m:
        seen = first_ok_from({14, 15, 16}, m["event"])
        metrics["new_pods_served"] = len(seen)
    res["metrics"] = metrics
    return res


def log_notes(path: Path) -> dict:
    """Panics and errors in a peer's log: counts, and the first few lines."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    panics = [ln for ln in lines if "panicked at" in ln]
    errors = [ln for ln in lines if re.search(r"\bERROR\b|\[(error|critical)\]|\[(ALERT|EMERG)",
                                             ln)]
    warnings = [ln for ln in lines if re.search(r"\bWARN\b|\[warning\]|\[WARNING\]", ln)]
    return {"log_lines": len(lines), "panics": len(panics), "error_lines": len(errors),
            "warn_lines": len(warnings), "panic_excerpt": panics[:5],
            "error_excerpt": errors[:8]}


def trim_log(path: Path, limit: int = 64 << 10) -> None:
    """Keeps a peer's log under `limit` bytes: its head and tail, with a note of what was cut."""
    try:
        size = path.stat().st_size
    except OSError:
        return
    if size <= limit:
        return
    data = path.read_bytes()
    half = limit // 2
    head, tail = data[:half], data[-half:]
    head = head[: head.rfind(b"\n") + 1]
    tail = tail[tail.find(b"\n") + 1:]
    path.write_bytes(head + f"\n[... {size - len(head) - len(tail)} bytes cut by "
                     "bench/lib/chaos.py ...]\n\n".encode() + tail)


def run_one(ctx: "Ctx", peer: Peer, scenario: str, clients: int, rnd: int) -> dict:
    d = ctx.raw / f"{clients}c" / scenario / f"r{rnd}-{peer.name}"
    d.mkdir(parents=True, exist_ok=True)
    rec: dict = {"scenario": scenario, "peer": peer.name, "clients": clients, "run": rnd}
    run = Run(ctx, peer, scenario, clients, rnd, d)
    proc = None
    try:
        if not ctx.dns.running():
            ctx.dns.start()
        run.start_pods(FIRST_PODS)
        ctx.dns.set(FIRST_PODS)
        if not wait_until(lambda: port_free("127.0.0.1", peer.port), 10):
            raise RuntimeError(f"127.0.0.1:{peer.port} still in use")
        proc = peer.start(d)
        t_start = time.monotonic()
        seen: set[str] = set()

        def routes_to_all():
            if not proc.alive():
                return "exited"
            status, body, _ = http_get("127.0.0.1", peer.port, REQUEST_PATH, 1)
            mm = BODY.fullmatch(body.encode())
            if status == 200 and mm:
                seen.add(mm.group(1).decode())
            return len(seen) == 3

        check = wait_until(routes_to_all, ctx.args.ready_timeout, 0.05)
        if check == "exited" or not check:
            raise RuntimeError(f"{peer.name} does not route to all 3 pods within "
                               f"{ctx.args.ready_timeout:g} s (saw {sorted(seen)}): "
                               + ("exited\n" if check == "exited" else "\n") + proc.tail())
        rec["ready_after_s"] = round(time.monotonic() - t_start, 2)
        rec["route_check"] = f"200 from pods .{', .'.join(sorted(seen))} through {peer.name}"
        fn, _ = SCENARIOS[scenario]
        planned = planned_seconds(scenario, ctx.timing)
        run.load = Load(peer.port, clients, ctx.args.client_timeout, ctx.args.max_requests,
                        planned + ctx.timing.jitter + 60)
        run.t0 = run.load.start()
        try:
            fn(run)
        finally:
            run.event("load stopped")
            run.load.stop()
        rows = run.load.all_records()
        if ctx.args.keep_requests:
            with gzip.open(d / "requests.csv.gz", "wt") as f:
                f.write("start_s,duration_s,outcome,pod\n")
                for s_, d_, o_, p_ in rows:
                    f.write(f"{s_:.4f},{d_:.4f},{json.dumps(o_)},{p_}\n")
        rec.update(analyse(run, rows))
        rec["events"] = run.events
        rec["pre_jitter_s"] = run.jitter_s
        rec["status"] = "ok"
        if not proc.alive():
            rec["status"] = "failed"
            rec["reason"] = f"{peer.name} died during the run (exit {proc.popen.returncode})"
        else:
            try:
                run.peer_stats = peer.snapshot(d) or {}
            except Exception as e:  # noqa: BLE001 - evidence only
                rec["snapshot_error"] = repr(e)
        return rec
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - one failed run must not end the others
        rec.update(status="failed", reason=f"{type(e).__name__}: {e}")
        return rec
    finally:
        if proc:
            rec["exit_code"] = stop_proc(proc, 5.0)
        run.teardown()
        if run.resets_sent is not None and "metrics" in rec:
            rec["metrics"]["connections_reset"] = run.resets_sent
        if run.peer_stats:
            rec["peer_stats"] = run.peer_stats
        notes = log_notes(d / "proxy.log")
        if notes:
            rec["log"] = notes
        for f in d.glob("*.log"):
            trim_log(f)
        for f in [*d.glob("*.sock"), *d.glob("*.pid")]:
            f.unlink(missing_ok=True)
        (d / "run.json").write_text(json.dumps(rec, indent=2, default=str))


# ---------------------------------------------------------------------------------------------
# summary


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summarize(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["scenario"], r["clients"], r["peer"]), []).append(r)
    out = []
    for (scenario, clients, peer), rs in groups.items():
        ok = [r for r in rs if r.get("status") == "ok"]
        e: dict = {"scenario": scenario, "clients": clients, "peer": peer, "runs": len(rs),
                   "ok_runs": len(ok)}
        if not ok:
            e["status"] = "failed"
            e["reason"] = rs[0].get("reason", "")
            out.append(e)
            continue
        e["status"] = "ok"
        e["requests"] = median([r["requests"] for r in ok])
        e["failed_median"] = median([r["failed"] for r in ok])
        e["failed_worst"] = max(r["failed"] for r in ok)
        e["failed_all"] = [r["failed"] for r in ok]
        e["truncated_median"] = median([r["truncated"] for r in ok])
        e["p99_ms"] = median([r["p99_ms"] for r in ok])
        kinds: Counter = Counter()
        for r in ok:
            kinds.update(r.get("kinds", {}))
        e["kinds"] = dict(kinds.most_common())
        if any("at_zero_failed" in r for r in ok):
            e["at_zero_failed_median"] = median([r.get("at_zero_failed") for r in ok])
            zk: Counter = Counter()
            for r in ok:
                zk.update(r.get("at_zero_kinds", {}))
            e["at_zero_kinds"] = dict(zk.most_common())
        keys = sorted({k for r in ok for k in r.get("metrics", {})})
        e["metrics"] = {k: median([r["metrics"].get(k) for r in ok]) for k in keys}
        e["last_failure_s"] = median([r.get("last_failure_s") for r in ok])
        # panics: "panicked at" lines in the log, or headway_panics_total where it exists
        e["panics"] = sum(max(r.get("log", {}).get("panics", 0),
                              int(r.get("peer_stats", {}).get("headway_panics_total", 0)))
                          for r in ok)
        e["error_lines"] = sum(r.get("log", {}).get("error_lines", 0) for r in ok)
        e["failed_runs"] = len(rs) - len(ok)
        out.append(e)
    return out


def fmt_kinds(kinds: dict, limit: int = 4) -> str:
    if not kinds:
        return "—"
    items = list(kinds.items())
    parts = [f"{k.replace('|', '/')} ×{v}" for k, v in items[:limit]]
    if len(items) > limit:
        parts.append(f"+{sum(v for _, v in items[limit:])} other")
    return "; ".join(parts)


METRIC_LABELS = {
    "new_pods_serving_s": "new pods all serving after {} s",
    "removed_last_served_s": "last answer from a removed pod {} s after removal",
    "converged_s": "converged (last answer from the old set) {} s",
    "recovery_first_200_s": "first 200 {} s after records returned",
    "recovery_all_pods_s": "all 3 pods serving after {} s",
    "slow_requests": "{} requests ≥ 0.9 s",
    "last_slow_start_s": "the last started {} s after the event",
    "new_pods_served": "{} of 3 new pods served",
    "connections_reset": "{} connections reset by the RST pod",
}


def fmt_metrics(e: dict) -> str:
    parts = []
    metrics = e.get("metrics", {})
    for k in METRIC_LABELS:
        if k not in metrics or (k == "slow_requests" and not metrics[k]):
            continue
        v = metrics[k]
        if v is None:
            parts.append(METRIC_LABELS[k].format("never"))
        else:
            parts.append(METRIC_LABELS[k].format(f"{round(v, 2):g}"))
    if e.get("last_failure_s") is not None:
        parts.append(f"last failure {e['last_failure_s']:.2f} s after the event")
    if "at_zero_failed_median" in e:
        parts.append(f"at zero (expected): {e['at_zero_failed_median']:g} failed "
                     f"({fmt_kinds(e.get('at_zero_kinds', {}), 2)})")
    if e.get("panics"):
        parts.append(f"**{e['panics']} panic(s)**")
    if e.get("error_lines"):
        parts.append(f"{e['error_lines']} error line(s) in its log")
    return "; ".join(parts) or "—"


def table(summary: list[dict], scenarios: list[str], clients_list: list[int],
          peers: list[str]) -> list[str]:
    L = ["| scenario | clients | peer | requests | failed (median / worst) | truncated | p99 ms "
         "| what failed (all runs) | convergence, recovery, notes |",
         "|---|---:|---|---:|---:|---:|---:|---|---|"]
    index = {(e["scenario"], e["clients"], e["peer"]): e for e in summary}
    for sc in scenarios:
        for c in clients_list:
            for p in peers:
                e = index.get((sc, c, p))
                if not e:
                    continue
                if e["status"] != "ok":
                    why = (e.get("reason") or "").splitlines()[0][:160].replace("|", "/")
                    L.append(f"| {sc} | {c} | {p} | failed to run | | | | {why} | |")
                    continue
                L.append(f"| {sc} | {c} | {p} | {e['requests']:,.0f} | "
                         f"{e['failed_median']:g} / {e['failed_worst']} | "
                         f"{e['truncated_median']:g} | "
                         f"{e['p99_ms']:.1f} | {fmt_kinds(e['kinds'])} | {fmt_metrics(e)} |")
    # A peer's error page quoted in a cell (`503 <html><body>…`) is text, not markup: the book's
    # renderer (mdBook) would take it for unclosed tags.
    return [line.replace("<", "&lt;") for line in L]


def env_info(ctx: "Ctx") -> dict:
    cpu = cpu_model()
    versions = {p.name: p.version() for p in ctx.peers}
    versions["nginx (pods)"] = (re.search(r"nginx/(\S+)", tool_version(["nginx", "-v"]))
                                or [None, "?"])[1]
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "kernel": platform.release(),
            "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg(), "versions": versions}


def report(ctx: "Ctx", info: dict, runs: list[dict], wall: float) -> tuple[str, str]:
    """(results.md text, the part for RELIABILITY.md)."""
    a = ctx.args
    summary = summarize(runs)
    T = ctx.timing
    part = [f"Last run: {info['date']}, {info['cores']} cores ({info['cpu']}), Linux "
            f"{info['kernel']}; wall time {wall / 60:.1f} min. Command: `{a.command_line}`.", "",
            "Versions: " + "; ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".", "",
            f"Each row: {a.runs} run(s); requests and failures are medians over runs, worst = "
            "the worst run; p99 = median over runs of each run's p99 over every request (failed "
            "ones included). Load: "
            f"{', '.join(str(c) for c in a.clients)} client threads (Python http.client), one "
            "keep-alive connection each, `GET /service/1` back to back, no client retry; "
            f"client timeout {a.client_timeout:g} s. Failed = not a 200 with the pod's full "
            "body, excluding **truncated** (the response had started when the pod died), "
            "counted apart" + (", and, in zero-and-back, the failures while at zero (from the "
                               "records' removal to the first 200 after they return), "
                               "expected and counted apart" if "zero-and-back" in a.scenarios
                               else "") + ".", ""]
    part += table(summary, a.scenarios, a.clients, a.peers)
    part += ["", "Scenarios (pods are stock nginx, one worker each, on 127.0.0.11-16; "
             f"{T.pre:g} s of load before the event plus 0-{T.jitter:g} s at random, so that "
             f"it falls at any phase of the peers' 1 s timers; {T.post:g} s after):", ""]
    part += [f"- **{s}**: {SCENARIOS[s][1]}" for s in a.scenarios]
    part += ["", "Settings (the same job for all: DNS every 1 s, health checks on /healthz every "
             "1 s, down after 2, up after 1, 2 retries on other pods, 1 s per try, keep-alive "
             "upstream connections, one worker):", ""]
    part += [f"- **{p.name}**: {p.settings}" for p in ctx.peers]
    if a.headway_template != "chaos-headway.yaml" and "headway" in a.peers:
        part += ["", f"**headway ran on another conf template: `{a.headway_template}`** (the "
                 "settings above are those of bench/conf/chaos-headway.yaml)."]
    md = []
    if a.smoke:
        md += ["# SMOKE RUN — not results", "",
               "Short windows, 1 run: shows that every peer starts, routes and gets measured in "
               "every scenario. The figures mean little.", ""]
    else:
        md += ["# Pods dying, side by side: headway, Envoy, HAProxy (bench/chaos.sh)", ""]
    md += part
    md += ["", f"Raw: `{rel(ctx.out)}/raw/<clients>c/<scenario>/r<run>-<peer>/` (the peer's "
           "conf, log, its view of the cluster at the end, the pods' logs, run.json with the "
           "event timeline); every figure in `results.json`.", ""]
    (ctx.out / "results.md").write_text("\n".join(md))
    (ctx.out / "results.json").write_text(json.dumps(
        {"env": info, "settings": {k: v for k, v in vars(a).items()},
         "peer_settings": {p.name: p.settings for p in ctx.peers},
         "scenarios": {s: SCENARIOS[s][1] for s in a.scenarios},
         "wall_seconds": round(wall, 1), "summary": summary, "runs": runs},
        indent=2, default=str))
    return "\n".join(md), "\n".join(part)


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(p)


SECTION = "## Pods dying, side by side with Envoy and HAProxy (bench/chaos.sh)"
BEGIN = "<!-- peers:begin (written by bench/chaos.sh --write-reliability; edit the script, not this table) -->"
END = "<!-- peers:end -->"
INTRO = """The same pod deaths played against headway, Envoy and HAProxy, each in front of three stock
nginx pods found by DNS (services/headless-dns, whose records the harness changes while the load
runs), each peer at its best settings for the job. Unlike tests/chaos.rs and tests/pod_death.rs
(headway alone), the clients here never retry: every failure a client would see is counted.
Rerun it and rewrite this table with:

```sh
bench/chaos.sh --runs 5 --write-reliability
```
"""


def write_reliability(part: str) -> None:
    path = REPO / "RELIABILITY.md"
    text = path.read_text()
    block = f"{BEGIN}\n{part}\n{END}"
    if "<!-- peers:begin" in text and END in text:
        start = text.index("<!-- peers:begin")
        end = text.index(END) + len(END)
        text = text[:start] + block + text[end:]
    else:
        section = f"{SECTION}\n\n{INTRO}\n{block}\n\n"
        anchor = text.find("\n## Hostile input")
        if anchor == -1:
            text = text.rstrip("\n") + "\n\n" + section
        else:
            text = text[:anchor + 1] + section + text[anchor + 1:]
    path.write_text(text)
    log(f"RELIABILITY.md: section '{SECTION[3:]}' written")


# ---------------------------------------------------------------------------------------------


class Ctx:
    def __init__(self, args):
        self.args = args
        self.headway_bin = Path(args.headway_bin)
        self.envoy_bin = Path(args.envoy_bin) if args.envoy_bin else None
        self.timing = Timing(args.smoke)
        self.tmp = Path(tempfile.mkdtemp(prefix="headway-chaos-"))
        self.out = Path()
        self.raw = Path()
        self.dns: ChaosDns | None = None
        ports = {"headway": (args.port_base, args.port_base + 90),
                 "envoy": (args.port_base + 1, args.port_base + 91),
                 "haproxy": (args.port_base + 2, args.port_base + 92)}
        self.peers = [PEERS[p](self, *ports[p]) for p in args.peers]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--rst-server":
        return rst_server(sys.argv[2])
    # Ctrl-C, SIGTERM, SIGHUP: stop what we started (SIGINT explicitly: a shell starting us in
    # the background leaves it ignored)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--peers", default="headway,envoy,haproxy")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--runs", type=int, default=None, help="runs of everything (default 5; "
                    "--smoke: 1)")
    ap.add_argument("--clients", default=None, help="client thread counts (default 16,64; "
                    "--smoke: 16)")
    ap.add_argument("--smoke", action="store_true", help="1 run, 16 clients, short windows")
    ap.add_argument("--client-timeout", type=float, default=5.0,
                    help="client socket timeout, s (a request slower than this is a failure)")
    ap.add_argument("--max-requests", type=int, default=3_000_000,
                    help="hard cap on requests per run")
    ap.add_argument("--write-reliability", action="store_true",
                    help="write the table into RELIABILITY.md between its peers: markers")
    ap.add_argument("--access-log", action="store_true", help="headway logs every request "
                    "(Envoy and HAProxy always log failed ones)")
    ap.add_argument("--keep-requests", action="store_true", help="write every request "
                    "(start, duration, outcome, pod) to raw/.../requests.csv.gz")
    ap.add_argument("--headway-template", default="chaos-headway.yaml",
                    help="headway's conf template (bench/conf/ or a path), to measure other "
                    "settings; the report says which one was used")
    ap.add_argument("--headway-log", default="info", help="RUST_LOG for headway")
    ap.add_argument("--pod-port", type=int, default=18380)
    ap.add_argument("--dns-port", type=int, default=15392)
    ap.add_argument("--port-base", type=int, default=18300,
                    help="headway, envoy, haproxy on +0,+1,+2; admin on +90,+91")
    ap.add_argument("--ready-timeout", type=float, default=30)
    ap.add_argument("--cooldown", type=float, default=0.5, help="seconds between runs")
    ap.add_argument("--results", default=str(BENCH / "results"))
    ap.add_argument("--headway-bin", default=str(REPO / "target/release/headway"))
    ap.add_argument("--dns-bin", default=str(REPO / "target/release/headless-dns"))
    ap.add_argument("--envoy-bin", default=os.environ.get("ENVOY_BIN"))
    args = ap.parse_args()
    args.command_line = os.environ.get("CHAOS_COMMAND") or " ".join(
        ["bench/lib/chaos.py", *sys.argv[1:]])
    args.runs = args.runs or (1 if args.smoke else 5)
    args.clients = [int(c) for c in (args.clients or ("16" if args.smoke else "16,64")).split(",")
                    if c]
    args.peers = [p for p in args.peers.split(",") if p]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    for p in args.peers:
        if p not in PEERS:
            ap.error(f"unknown peer {p}: one of {', '.join(PEERS)}")
    for s in args.scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s}: one of {', '.join(SCENARIOS)}")
    if "envoy" in args.peers and not args.envoy_bin:
        ap.error("envoy needs --envoy-bin or ENVOY_BIN (bench/chaos.sh sets it)")
    for need in ("nginx",) + (("haproxy",) if "haproxy" in args.peers else ()):
        if not shutil.which(need):
            ap.error(f"{need} is missing (bench/chaos.sh installs it)")

    ctx = Ctx(args)
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-chaos-smoke" if args.smoke else "-chaos")
    ctx.out = Path(args.results) / stamp
    ctx.raw = ctx.out / "raw"
    ctx.raw.mkdir(parents=True, exist_ok=True)
    info = env_info(ctx)
    (ctx.out / "env.json").write_text(json.dumps(info, indent=2))

    plan = [(rnd, c, s, p) for rnd in range(1, args.runs + 1) for c in args.clients
            for s in args.scenarios for p in ctx.peers]
    est = sum(planned_seconds(s, ctx.timing) + ctx.timing.jitter / 2 + 4 for _, _, s, _ in plan)
    log(f"results in {ctx.out}")
    log(f"{len(plan)} runs ({args.runs} run(s) × clients {args.clients} × "
        f"{len(args.scenarios)} scenarios × peers {','.join(args.peers)}), about "
        f"{est / 60:.1f} min")

    runs: list[dict] = []
    t0 = time.monotonic()
    interrupted = False
    try:
        ctx.dns = ChaosDns(Path(args.dns_bin), args.dns_port, ctx.tmp, ctx.raw)
        ctx.dns.set(FIRST_PODS)
        ctx.dns.start()
        log(f"headless-dns on 127.0.0.1:{args.dns_port} answering {DNS_NAME} from its zone file")
        for i, (rnd, c, s, p) in enumerate(plan, 1):
            rec = run_one(ctx, p, s, c, rnd)
            runs.append(rec)
            if rec["status"] == "ok":
                extra = f"  at-zero {rec['at_zero_failed']}" if "at_zero_failed" in rec else ""
                log(f"[{i}/{len(plan)}] run {rnd} {c:>3}c {s:13} {p.name:8} "
                    f"{rec['requests']:>7} req  failed {rec['failed']:>5}  truncated "
                    f"{rec['truncated']}{extra}  p99 {rec['p99_ms']} ms  "
                    f"{fmt_kinds(rec['kinds'], 3)}  {rec.get('metrics') or ''}"
                    + (f"  PANICS {rec['log']['panics']}" if rec.get("log", {}).get("panics")
                       else ""))
            else:
                log(f"[{i}/{len(plan)}] run {rnd} {c}c {s} {p.name}: FAILED: {rec['reason']}")
            time.sleep(args.cooldown)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping everything, writing what was measured")
    finally:
        stop_everything()
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    wall = time.monotonic() - t0
    text, part = report(ctx, info, runs, wall)
    print()
    print(text)
    log(f"written: {ctx.out / 'results.md'} and results.json")
    if args.write_reliability:
        if args.smoke or interrupted:
            log("not writing RELIABILITY.md from a smoke or interrupted run")
        else:
            write_reliability(part)
    failed = [r for r in runs if r.get("status") != "ok"]
    return 1 if failed or interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
