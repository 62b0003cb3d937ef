"""Shared pieces of the benchmark drivers (bench.py, scale.py): configs from templates, processes
and their CPU and memory as /proc tells them, the backend nginx and the DNS server.

Standard library only: the harness must run on a fresh machine with nothing but python3.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
REPO = BENCH.parent
CONF = BENCH / "conf"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo, or "?"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


# ---------------------------------------------------------------------------------------------
# configs


_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


def render(template: str, out: Path, **values) -> Path:
    """Fills `${NAME}` placeholders of bench/conf/<template> (any other `$` is left alone, as nginx
    needs) and writes the result to `out`. An unknown placeholder is an error, not a blank."""
    text = (CONF / template).read_text()

    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key not in values:
            raise KeyError(f"{template}: no value for ${{{key}}}")
        return str(values[key])

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_PLACEHOLDER.sub(sub, text))
    return out


# ---------------------------------------------------------------------------------------------
# processes, CPU, memory


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(root: int) -> list[int]:
    """`root` and all its descendants alive now (nginx's master and workers, for instance)."""
    kids = children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of each process (all its threads, dead ones included), summed."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total / CLK_TCK


def mem_kb(pids: list[int], field: str) -> int:
    """A /proc/<pid>/status field in kB (VmRSS, VmHWM), summed over the processes."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


class Proc:
    """A process we started, in its own session, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], logfile: Path, *, cpus: str | None = None,
                 env: dict | None = None, stop_signal: int = signal.SIGTERM):
        self.name = name
        self.stop_signal = stop_signal
        if cpus:
            argv = ["taskset", "-c", cpus, *argv]
        self.argv = argv
        logfile.parent.mkdir(parents=True, exist_ok=True)
        self.logfile = logfile
        self._log = open(logfile, "ab")
        self._log.write(("$ " + " ".join(argv) + "\n").encode())
        self._log.flush()
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True,
                                      env={**os.environ, **(env or {})})
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def pids(self) -> list[int]:
        return tree(self.pid) if self.alive() else []

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.alive():
            try:
                self.popen.send_signal(self.stop_signal)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.pid}) ignored signal {self.stop_signal}: SIGKILL")
                try:
                    os.killpg(self.pid, signal.SIGKILL)  # its own session: only its processes
                except OSError:
                    pass
                self.popen.wait(5)
        # workers that outlived their master (nginx) are in the same process group
        try:
            os.killpg(self.pid, 0)
            time.sleep(0.2)
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass
        self._log.close()
        return self.popen.returncode

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def wait_until(pred, timeout: float, interval: float = 0.1):
    """Calls pred() until it returns something truthy; returns that, or None at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = pred()
        except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def port_free(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
            return True
        except OSError:
            return False


def http_get(host: str, port: int, path: str = "/", timeout: float = 2.0,
             headers: dict | None = None) -> tuple[int, str, dict]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close", **(headers or {})})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        return resp.status, body, dict(resp.getheaders())
    finally:
        conn.close()


def get_json(host: str, port: int, path: str, timeout: float = 5.0):
    status, body, _ = http_get(host, port, path, timeout)
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {body[:200]}")
    return json.loads(body)


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0].strip() if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "not found"


def which(name: str) -> str | None:
    return shutil.which(name)


# ---------------------------------------------------------------------------------------------
# the shared fixtures: backend nginx, DNS server


class Backend:
    """nginx serving the small fixed answer on BACKEND_IP: HTTP/1.1 on one port, h2c on another."""

    def __init__(self, workdir: Path, ip: str, port_h1: int, port_h2c: int, workers: int,
                 cpus: str | None):
        self.ip, self.port_h1, self.port_h2c = ip, port_h1, port_h2c
        d = workdir / "backend"
        d.mkdir(parents=True, exist_ok=True)
        for port in (port_h1, port_h2c):
            if not port_free(ip, port):
                raise RuntimeError(f"{ip}:{port} is in use: is another benchmark running?")
        conf = render("backend-nginx.conf", d / "nginx.conf", DIR=d, BACKEND_IP=ip,
                      BACKEND_PORT_H1=port_h1, BACKEND_PORT_H2C=port_h2c,
                      BACKEND_WORKERS=workers)
        self.proc = Proc("backend nginx", ["nginx", "-p", str(d), "-c", str(conf), "-e", "stderr",
                                           "-g", "daemon off;"], d / "nginx.log", cpus=cpus,
                         stop_signal=signal.SIGTERM)
        ok = wait_until(lambda: http_get(ip, port_h1)[0] == 200, 10)
        if not ok:
            self.proc.stop()
            raise RuntimeError("backend nginx did not answer:\n" + self.proc.tail())
        status, body, _ = http_get(ip, port_h1)
        log(f"backend nginx on {ip}:{port_h1} (HTTP/1.1) and :{port_h2c} (h2c), "
            f"{workers} workers: {status} {body.strip()!r}")

    def pids(self) -> list[int]:
        return self.proc.pids()

    def stop(self) -> None:
        self.proc.stop()


class Dns:
    """services/headless-dns answering NAME=IP,... over UDP and TCP (truncated UDP answers make
    resolvers retry over TCP)."""

    def __init__(self, workdir: Path, binary: Path, ip: str, port: int,
                 records: dict[str, list[str]], cpus: str | None, ttl: int = 5):
        self.ip, self.port = ip, port
        if not port_free(ip, port):
            raise RuntimeError(f"DNS port {ip}:{port} is in use")
        args = [f"{name}={','.join(ips)}" for name, ips in records.items()]
        argv = [str(binary), "--listen", f"{ip}:{port}", "--ttl", str(ttl), *args]
        self.proc = Proc("headless-dns", argv, workdir / "dns.log", cpus=cpus)
        name = next(iter(records))
        ok = wait_until(lambda: dns_query(ip, port, name)[1] > 0 or None, 10)
        if not ok:
            self.proc.stop()
            raise RuntimeError("headless-dns did not answer:\n" + self.proc.tail())
        log(f"headless-dns on {ip}:{port}: {len(records)} name(s), "
            f"{sum(len(v) for v in records.values())} A record(s), TTL {ttl}s")

    def stop(self) -> None:
        self.proc.stop()


def dns_query(ip: str, port: int, name: str, tcp: bool = False, edns_payload: int | None = 4096,
              timeout: float = 2.0) -> tuple[bool, int]:
    """One A query; returns (truncated, answer count). Enough DNS to prove the TCP fallback."""
    qid = int.from_bytes(os.urandom(2), "big")
    header = qid.to_bytes(2, "big") + b"\x01\x00" + (1).to_bytes(2, "big") + b"\x00\x00\x00\x00"
    header += (1 if edns_payload else 0).to_bytes(2, "big")
    qname = b"".join(len(p).to_bytes(1, "big") + p.encode() for p in name.strip(".").split("."))
    msg = header + qname + b"\x00" + b"\x00\x01\x00\x01"
    if edns_payload:
        msg += b"\x00" + b"\x00\x29" + edns_payload.to_bytes(2, "big") + b"\x00\x00\x00\x00\x00\x00"
    if tcp:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            s.sendall(len(msg).to_bytes(2, "big") + msg)
            want = int.from_bytes(_recv_exact(s, 2), "big")
            reply = _recv_exact(s, want)
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(msg, (ip, port))
            reply, _ = s.recvfrom(65535)
    flags = int.from_bytes(reply[2:4], "big")
    return bool(flags & 0x0200), int.from_bytes(reply[6:8], "big")


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("short read")
        buf += chunk
    return buf


def headway_metric(admin_ip: str, admin_port: int, series: str, **labels) -> float:
    """Sum of a Prometheus series from headway's /metrics, over samples matching the labels."""
    status, body, _ = http_get(admin_ip, admin_port, "/metrics", timeout=5)
    if status != 200:
        raise RuntimeError(f"/metrics: {status}")
    total = 0.0
    for line in body.splitlines():
        if not line.startswith(series):
            continue
        name_labels, _, value = line.rpartition(" ")
        if name_labels.split("{")[0] != series:
            continue
        if all(f'{k}="{v}"' in name_labels for k, v in labels.items()):
            total += float(value)
    return total


def cpu_ns_threads(pid: int) -> int:
    """Run time of the process's live threads in ns (/proc/<pid>/task/*/schedstat): finer than
    the clock ticks of /proc/<pid>/stat, for small amounts such as one DNS refresh. Threads that
    exited are not counted, so use it across windows where the thread set is stable."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total
