"""headway's own cost per request over a bare pingora ProxyHttp, in callgrind instructions (issue
15), driven by bench/callgrind.sh; see bench/README.md.

Each peer (headway, and examples/pingora_floor: pingora's ProxyHttp with one fixed upstream, the
same allocator, one worker) runs under `valgrind --tool=callgrind` in front of the same nginx on
loopback, twice: once for SMALL and once for LARGE keep-alive `GET /` sent one at a time through
ONE client connection. Start-up and shutdown are the same in both runs, so

    instructions per request = (Ir(LARGE) - Ir(SMALL)) / (LARGE - SMALL)

counts what one more request costs, every thread of the proxy included. Instruction counts do
not depend on the machine's load; what is left varies by ~0.1% (random hash keys and request
ids, how reads and wake-ups happen to interleave): the rounds show it.

With --protocol h2c (HTTP/2 with prior knowledge from the client and to an h2c nginx: the gRPC
path) or h2-tls (HTTP/2 over TLS at the listener, HTTP/1.1 to nginx), the requests are h2load's
(`-c 1 -m 1`: one connection, one stream at a time), and the floor speaks the same protocols.
Before them, one curl request checks the answer (which protocol reached nginx): it costs the
same in both runs, so it cancels too.

Work that depends on wall time rather than on requests (timers firing every so often) would scale
with a run's length: the short run is kept alive, idle, as long as the long one took (`--no-pad`
not to), so that it cancels too. It is small either way (pingora_floor's clock thread, ~70k
instructions a second under valgrind; headway's idle, a few thousand).

Standard library only.
"""

from __future__ import annotations

import argparse
import gzip
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
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH, REPO, Backend, Proc, cpu_model, log, port_free, tool_version  # noqa: E402

BACKEND_IP = "127.0.10.1"
BACKEND_H1, BACKEND_H2C = 18481, 18482  # the h2c port: --protocol h2c's upstream
PROTOCOLS = ("h1", "h2c", "h2-tls")
PROTOCOL_LABEL = {
    "h1": "HTTP/1.1 keep-alive from the client and to nginx",
    "h2c": "h2load, HTTP/2 with prior knowledge from the client and to nginx's h2c port",
    "h2-tls": "h2load, HTTP/2 over TLS at the listener, HTTP/1.1 to nginx",
}
PROXY = {"headway": ("127.0.0.1", 18400), "floor": ("127.0.0.1", 18401)}
ADMIN = ("127.0.0.1", 18490)
EXPECTED_BODY = b"backend HTTP/1.1\n"  # bench/conf/backend-nginx.conf's answer to an HTTP/1.1 GET
REQUEST = b"GET / HTTP/1.1\r\nHost: callgrind.bench\r\nUser-Agent: headway-callgrind\r\n\r\n"
PEER_LABEL = {
    "headway": "headway",
    "floor": "pingora floor (bare ProxyHttp, fixed upstream)",
}


class Fail(RuntimeError):
    """A run that cannot be measured: the harness stops and says why."""


# ---------------------------------------------------------------------------------------------
# the confs


SPLIT_TARGET = {
    "none": "cluster: backend",
    # --split: the route's requests split 90/10 between two clusters (the same nginx), picked
    # at random by weight, or (sticky) by the User-Agent every request carries, hashed
    "random": "clusters: [{ name: backend, weight: 90 }, { name: canary, weight: 10 }]",
    "sticky": "clusters: [{ name: backend, weight: 90 }, { name: canary, weight: 10 }], "
              "sticky: { header: user-agent }",
}


def route_lines(routes: int, route_at: str, split: str = "none",
                route_keys: list[str] = ()) -> list[str]:
    """The conf's routes: `prefix: /` alone by default; with --routes N, N routes of which the
    one every request matches (`path: /`) is the first or the last (--route-at), the others
    prefixes no request matches (`/r00001/`, ...): the cost of a table's size to a request.
    `split`: what the matched route sends to (see SPLIT_TARGET). `route_keys` (--route-key):
    more keys of the route every request matches, e.g. its `headers` matches, for the cost of
    a route feature."""
    more = "".join(f", {k}" for k in route_keys)
    if routes <= 1:
        return [f"    - {{ prefix: /, {SPLIT_TARGET[split]}{more} }}"]
    others = [f"    - {{ prefix: /r{i:05}/, cluster: backend }}" for i in range(1, routes)]
    target = [f"    - {{ path: /, {SPLIT_TARGET[split]}{more} }}"]
    return target + others if route_at == "first" else others + target


def headway_conf(d: Path, extra: list[str], access_log: bool = False, routes: int = 1,
                 route_at: str = "last", split: str = "none",
                 route_keys: list[str] = (), protocol: str = "h1",
                 tls: tuple[Path, Path] | None = None) -> Path:
    """bench/conf/headway.yaml's settings, with the cluster's address an IP literal (no DNS);
    `extra`: top-level lines added (--headway-conf), for measuring a setting's cost;
    `access_log`: the access log on (plain lines to a file in `d`, as shipped but for the file)
    instead of off; `routes`, `route_at`, `split`, `route_keys`: see route_lines; `protocol`:
    h2c on the listener and to the cluster (h2c), or the listener TLS with `tls`'s certificate
    and key (h2-tls)."""
    listen = f'"{PROXY["headway"][0]}:{PROXY["headway"][1]}"'
    if protocol == "h2-tls" and tls:
        listen = f'{{ address: {listen}, tls: {{ cert: "{tls[0]}", key: "{tls[1]}" }} }}'
    lines = [
        "# written by bench/lib/callgrind.py: bench/conf/headway.yaml with an IP-literal cluster",
        "version: 1",
        "threads: 1",
        *extra,
        f"pid_file: {d}/headway.pid",
        f"upgrade_sock: {d}/headway_upgrade.sock",
        # pingora's defaults would hold SIGTERM for minutes; nothing is in flight at the stop
        "grace_period_seconds: 1",
        "graceful_shutdown_timeout_seconds: 1",
        "gateway:",
        f"  listen: [{listen}]",
        *(["  h2c: true"] if protocol == "h2c" else []),
        f'  admin: {{ listen: "{ADMIN[0]}:{ADMIN[1]}" }}',
        "  drain_time: 0s",
        f"  access_log: {{ path: {d}/access.log }}" if access_log
        else "  access_log: { enabled: false }",
        "  routes:",
        *route_lines(routes, route_at, split, route_keys),
        "  clusters:",
        "    - name: backend",
        f"      address: {BACKEND_IP}",
        f"      port: {BACKEND_H2C if protocol == 'h2c' else BACKEND_H1}",
        *(["      protocol: http2"] if protocol == "h2c" else []),
        "      connect_timeout: 1s",
        "      # passive health off, as in bench/conf/headway.yaml; no health_check: none",
        "      outlier_detection: { consecutive_failures: 0 }",
        *([] if split == "none" else [
            "    - name: canary",
            f"      address: {BACKEND_IP}",
            f"      port: {BACKEND_H1}",
            "      connect_timeout: 1s",
            "      outlier_detection: { consecutive_failures: 0 }",
        ]),
    ]
    conf = d / "headway.yaml"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def allocator_env() -> dict[str, str]:
    """headway re-executes itself once to set mimalloc's options (src/main.rs, ALLOCATOR_ENV)
    unless they are already in its environment; under valgrind that exec would leave callgrind
    behind. Both peers get the same options (same allocator, same settings)."""
    text = (REPO / "src" / "main.rs").read_text()
    block = re.search(r"ALLOCATOR_ENV[^=]*=\s*\[(.*?)\];", text, re.S)
    pairs = re.findall(r'\(\s*"([A-Z0-9_]+)"\s*,\s*"([^"]*)"\s*\)', block.group(1)) if block else []
    if not pairs:
        raise Fail("cannot read ALLOCATOR_ENV from src/main.rs: without it in the environment, "
                   "headway re-executes itself outside valgrind (update allocator_env())")
    return dict(pairs)


# ---------------------------------------------------------------------------------------------
# the client


def recv_response(sock: socket.socket, buf: bytearray) -> tuple[int, bytes, str]:
    """Reads one response (headers, then a Content-Length body) from a keep-alive connection.
    `buf` carries bytes read past the previous response."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(buf) > 65536:
            raise Fail("response headers over 64 KiB")
        chunk = sock.recv(65536)
        if not chunk:
            raise Fail("connection closed before a response's headers")
        buf += chunk
    head = bytes(buf[:end]).decode("latin-1")
    del buf[: end + 4]
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise Fail(f"not an HTTP/1 status line: {lines[0]!r}")
    status = int(parts[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        elif name.strip().lower() == "transfer-encoding":
            raise Fail(f"unexpected Transfer-Encoding: {value.strip()} (expected a "
                       "Content-Length body)")
    if length is None:
        raise Fail(f"response without Content-Length:\n{head}")
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise Fail("connection closed in a response body")
        buf += chunk
    body = bytes(buf[:length])
    del buf[:length]
    return status, body, head


def connect(addr: tuple[str, int], proc: Proc, timeout: float) -> tuple[socket.socket, float]:
    """The ONE client connection, opened as soon as the proxy listens (a refused connect never
    reaches it, so no probe connection is counted). Returns it and the seconds waited."""
    t0 = time.monotonic()
    while True:
        if not proc.alive():
            raise Fail(f"{proc.name} exited before listening:\n{proc.tail()}")
        try:
            s = socket.create_connection(addr, timeout=2)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s, time.monotonic() - t0
        except OSError:
            pass
        if time.monotonic() - t0 > timeout:
            raise Fail(f"{proc.name} did not listen on {addr[0]}:{addr[1]} within {timeout:.0f} s"
                       f":\n{proc.tail()}")
        time.sleep(0.2)


def send_requests(sock: socket.socket, n: int, per_request_timeout: float,
                  deadline: float) -> dict:
    """n keep-alive GETs, one at a time; every answer must be nginx's 200 and its body."""
    sock.settimeout(per_request_timeout)
    buf = bytearray()
    t0 = time.monotonic()
    first_head = ""
    for i in range(n):
        if time.monotonic() > deadline:
            raise Fail(f"request {i + 1} of {n}: the run's time limit passed")
        try:
            sock.sendall(REQUEST)
            status, body, head = recv_response(sock, buf)
        except socket.timeout as e:
            raise Fail(f"request {i + 1} of {n}: no answer within {per_request_timeout} s") from e
        except OSError as e:
            raise Fail(f"request {i + 1} of {n}: {e}") from e
        except Fail as e:
            raise Fail(f"request {i + 1} of {n}: {e}") from e
        if status != 200 or body != EXPECTED_BODY:
            raise Fail(f"request {i + 1} of {n}: {status} {body[:200]!r} (expected 200 "
                       f"{EXPECTED_BODY!r})\n{head}")
        if i == 0:
            first_head = head
    if buf:
        raise Fail(f"{len(buf)} bytes after the last response: {bytes(buf[:200])!r}")
    return {"seconds": time.monotonic() - t0, "first_response_head": first_head}


def wait_listening(addr: tuple[str, int], proc: Proc, timeout: float) -> float:
    """Waits until the proxy accepts a connection (closed at once: one in every run, so it
    cancels). Returns the seconds waited."""
    s, waited = connect(addr, proc, timeout)
    s.close()
    return waited


def check_h2(protocol: str, addr: tuple[str, int]) -> str:
    """One request by curl over the protocol measured: HTTP/2 at the proxy, and the answer of
    the nginx port meant (h2c upstream: `backend HTTP/2.0`; h2-tls: `backend HTTP/1.1`)."""
    tls = protocol == "h2-tls"
    url = f"{'https' if tls else 'http'}://{addr[0]}:{addr[1]}/"
    cmd = ["curl", "-s", "--max-time", "30", "-w", "\n%{http_code} %{http_version}",
           *(["-k", "--http2"] if tls else ["--http2-prior-knowledge"]), url]
    p = subprocess.run(cmd, capture_output=True, timeout=60)
    want = b"backend HTTP/1.1\n" if tls else b"backend HTTP/2.0\n"
    if p.stdout != want + b"\n200 2":
        raise Fail(f"{' '.join(cmd)}: {p.stdout[:300]!r} {p.stderr[:300]!r} (expected "
                   f"{want!r}, 200 over HTTP/2)")
    return p.stdout.decode(errors="replace")


def h2load_requests(protocol: str, addr: tuple[str, int], n: int, timeout: float) -> dict:
    """n requests by h2load through ONE HTTP/2 connection, one stream at a time; every one
    must be a 2xx."""
    url = f"{'https' if protocol == 'h2-tls' else 'http'}://{addr[0]}:{addr[1]}/"
    # no Host header: h2load would send it beside its :authority, which differs (a 4xx)
    cmd = ["h2load", "-n", str(n), "-c", "1", "-m", "1", "-H", "User-Agent: headway-callgrind",
           url]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise Fail(f"{' '.join(cmd)}: not done within {timeout:.0f} s") from e
    seconds = time.monotonic() - t0
    out = p.stdout
    done = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    if (p.returncode != 0 or not done or int(done.group(2)) != n or not codes
            or int(codes.group(1)) != n or not proto or not proto.group(1).startswith("h2")):
        raise Fail(f"{' '.join(cmd)} (exit {p.returncode}): expected {n} 2xx over h2:\n"
                   f"{out[-1500:]}{p.stderr[-500:]}")
    return {"seconds": seconds, "first_response_head": f"h2load: {proto.group(1)}, {n} 2xx"}


# ---------------------------------------------------------------------------------------------
# one run under callgrind


def out_name(peer: str, n: int, rnd: int) -> str:
    return f"callgrind.out.{peer}-{n}-r{rnd}"


def run_one(args, peer: str, n: int, rnd: int, raw: Path, env: dict,
            pad_to: float | None) -> dict:
    d = raw / f"{peer}-{n}-r{rnd}"
    d.mkdir(parents=True, exist_ok=True)
    addr = PROXY[peer]
    for a in ([addr, ADMIN] if peer == "headway" else [addr]):
        if not port_free(*a):
            raise Fail(f"{a[0]}:{a[1]} is in use: is another callgrind bench running?")
    out_file = raw / out_name(peer, n, rnd)
    if peer == "headway":
        target = [str(args.headway_bin), "-c",
                  str(headway_conf(d, args.headway_conf, args.access_log, args.routes,
                                   args.route_at, args.split, args.route_key,
                                   args.protocol, args.tls_files))]
    else:
        port = BACKEND_H2C if args.protocol == "h2c" else BACKEND_H1
        target = [str(args.floor_bin), f"{addr[0]}:{addr[1]}", f"{BACKEND_IP}:{port}", "1"]
        if args.protocol == "h2c":
            target.append("h2c")
        elif args.protocol == "h2-tls":
            target.append(f"tls:{args.tls_files[0]}:{args.tls_files[1]}")
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
            "--trace-children=no", *target]
    log(f"round {rnd}, {peer}, {n} requests")
    t_start = time.monotonic()
    proc = Proc(f"{peer} under callgrind", argv, d / "log.txt",
                env={**env, "RUST_LOG": "warn"}, stop_signal=signal.SIGTERM)
    result: dict = {"peer": peer, "requests": n, "round": rnd, "argv": argv}
    try:
        if args.protocol == "h1":
            sock, waited = connect(addr, proc, args.start_timeout)
        else:
            waited = wait_listening(addr, proc, args.start_timeout)
        exe = os.readlink(f"/proc/{proc.pid}/exe")
        if "callgrind" not in exe:
            raise Fail(f"the process listening is {exe}, not callgrind: it re-executed itself "
                       "outside valgrind")
        result["start_seconds"] = round(waited, 2)
        if args.protocol == "h1":
            with sock:
                client = send_requests(sock, n, args.request_timeout,
                                       time.monotonic() + args.run_timeout)
        else:
            result["check"] = check_h2(args.protocol, addr)
            client = h2load_requests(args.protocol, addr, n, args.run_timeout)
        result["client_seconds"] = round(client["seconds"], 2)
        result["first_response_head"] = client["first_response_head"]
        pad = 0.0
        if pad_to is not None and pad_to > client["seconds"]:
            pad = pad_to - client["seconds"]
            time.sleep(pad)
        result["idle_pad_seconds"] = round(pad, 2)
        if not proc.alive():
            raise Fail(f"{proc.name} died during the run:\n{proc.tail()}")
        t_stop = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        try:
            rc = proc.popen.wait(args.stop_timeout)
        except subprocess.TimeoutExpired as e:
            raise Fail(f"{proc.name} still running {args.stop_timeout:.0f} s after SIGTERM:\n"
                       f"{proc.tail()}") from e
        result["stop_seconds"] = round(time.monotonic() - t_stop, 2)
        result["exit_code"] = rc
        result["total_seconds"] = round(time.monotonic() - t_start, 2)
        if rc != 0:
            raise Fail(f"{proc.name} exited with {rc} after SIGTERM:\n{proc.tail()}")
    finally:
        proc.stop(timeout=5)
    if not out_file.exists():
        raise Fail(f"callgrind wrote no {out_file}:\n{proc.tail()}")
    result["instructions"] = totals(out_file)
    result["callgrind_out"] = out_file.name
    log(f"  {result['instructions']:,} instructions; start {result['start_seconds']} s, "
        f"requests {result['client_seconds']} s, idle pad {result['idle_pad_seconds']} s, "
        f"SIGTERM to exit {result['stop_seconds']} s")
    return result


# ---------------------------------------------------------------------------------------------
# reading callgrind's output


def open_out(path: Path):
    """A callgrind output, as written or gzipped (the results keep them gzipped)."""
    if not path.exists() and Path(str(path) + ".gz").exists():
        path = Path(str(path) + ".gz")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", errors="replace")
    return open(path, errors="replace")


def totals(path: Path) -> int:
    """The `totals:` (or `summary:`) line: Ir of the whole run, every thread."""
    summary = None
    with open_out(path) as f:
        for line in f:
            if line.startswith("totals:"):
                return int(line.split()[1])
            if line.startswith("summary:"):
                summary = int(line.split()[1])
    if summary is None:
        raise Fail(f"{path}: no totals: line")
    return summary


_NAME = re.compile(r"^\((\d+)\)(?: (.*))?$")


def profile(path: Path) -> dict:
    """Self Ir per function, Ir of each caller → callee edge (callgrind gives a call's inclusive
    cost on the line after `calls=`), self Ir per source file (the file of the inlined code
    where line tables say so: with fat LTO much of headway is inlined into few symbols), and
    how many times each function was called (recursive calls left out)."""
    names: dict[str, dict[str, str]] = {"fn": {}, "fl": {}, "ob": {}}
    kind_of = {"fn": "fn", "cfn": "fn", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl",
               "cfl": "fl", "ob": "ob", "cob": "ob"}

    def name(kind: str, value: str) -> str:
        m = _NAME.match(value)
        if not m:
            return value
        table = names[kind_of[kind]]
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), value)

    self_fn: dict[str, int] = defaultdict(int)
    edges: dict[tuple[str, str], int] = defaultdict(int)
    self_file: dict[str, int] = defaultdict(int)
    ncalls: dict[str, int] = defaultdict(int)  # times each function was called
    fn = fl = fi = cfn = ""
    in_call = False
    with open_out(path) as f:
        for line in f:
            c = line[:1]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if in_call:
                    edges[(fn, cfn)] += cost
                    in_call = False
                else:
                    self_fn[fn] += cost
                    self_file[fi or fl] += cost
                continue
            key, eq, value = line.rstrip("\n").partition("=")
            if not eq:
                continue
            if key == "fn":
                fn, fi = name("fn", value), ""
            elif key == "fl":
                fl, fi = name("fl", value), ""
            elif key in ("fi", "fe"):
                fi = name(key, value)
            elif key == "cfn":
                cfn = name("cfn", value)
            elif key in ("cfi", "cfl", "ob", "cob"):
                name(key, value)
            elif key == "calls":
                in_call = True
                if cfn != fn:
                    ncalls[cfn] += int(value.split()[0])
    return {"self": dict(self_fn), "edges": dict(edges), "self_by_file": dict(self_file),
            "calls": dict(ncalls)}


def inclusive(prof: dict) -> dict[str, int]:
    """self + the calls it makes (calls to itself left out), as callgrind_annotate counts."""
    inc = defaultdict(int, prof["self"])
    for (caller, callee), cost in prof["edges"].items():
        if caller != callee:
            inc[caller] += cost
    return dict(inc)


def headway_own(fn: str) -> bool:
    """A function of headway's own: its path (or the type it is implemented on) is headway's,
    or it drops a headway value. pingora's generic machinery instantiated with headway's types
    (`pingora_proxy::HttpProxy<headway::...>`) is pingora's."""
    f = fn
    if f.startswith("core::ptr::drop_in_place<") or f.startswith("drop_in_place<"):
        f = f.split("<", 1)[1]
    f = f.lstrip("<&* ")
    if f.startswith("mut "):
        f = f[4:]
    return f.startswith("headway::")


def headway_file(path: str) -> bool:
    try:
        rel = Path(path).resolve().relative_to(REPO)
    except ValueError:
        return not path.startswith("/") and path.startswith("src/")
    return rel.parts[:1] == ("src",)


def machinery(fn: str) -> bool:
    """pingora's request machinery: pingora_proxy's code, which calls headway's hooks."""
    return fn.lstrip("<&* ").startswith("pingora_proxy::")


def own_and_back(edges: dict, self_cost: dict) -> tuple[set[str], set[str]]:
    """headway's own functions, and the other functions from which pingora's request machinery
    (pingora_proxy, which calls headway's hooks back) is reached in the call graph: the
    framework under headway's client-stream wrappers. A library that calls a headway closure
    back (pingora's LoadBalancer and its predicate) is not the framework: it is work headway
    asked for."""
    funcs = set(self_cost) | {f for e in edges for f in e}
    own = {f for f in funcs if headway_own(f)}
    callers: dict[str, set[str]] = defaultdict(set)
    for (caller, callee), cost in edges.items():
        if cost and caller != callee:
            callers[callee].add(caller)
    back = {f for f in funcs if machinery(f)}
    todo, seen = list(back), set(back)
    while todo:
        f = todo.pop()
        for c in callers.get(f, ()):
            if c not in seen:
                seen.add(c)
                if c not in own:
                    back.add(c)
                todo.append(c)
    return own, back


def own_costs(prof: dict) -> tuple[dict[str, float], float]:
    """What headway's own functions cost, pingora's machinery left out.

    A headway function's inclusive cost can hold all of pingora: the client-stream wrappers run
    pingora's whole request loop, which calls headway's hooks back. So a call from a headway
    function into a function that leads (in callgrind's call graph) to pingora_proxy's request
    machinery is the framework's and is left out; a call into anything else (std, hashbrown,
    http, prometheus, tokio's timers, pingora's header helpers and load balancer, the allocator)
    is work headway asked for and is counted. Calls between headway functions count in
    proportion to the callee's own share. Returns own inclusive cost per headway function, and
    headway's total (its functions' self cost + their calls into anything but that machinery:
    each instruction once)."""
    own, back = own_and_back(prof["edges"], prof["self"])
    out_edges: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for (caller, callee), cost in prof["edges"].items():
        if caller in own and caller != callee:
            out_edges[caller].append((callee, cost))
    inc = inclusive(prof)
    memo: dict[str, float] = {}

    def own_inc(f: str, stack: frozenset) -> float:
        if f in memo:
            return memo[f]
        v = float(prof["self"].get(f, 0))
        for callee, cost in out_edges.get(f, ()):
            if callee in own:
                if callee in stack or not inc.get(callee):
                    continue
                v += cost * min(1.0, own_inc(callee, stack | {f}) / inc[callee])
            elif callee not in back:
                v += cost
        memo[f] = v
        return v

    per_fn = {f: own_inc(f, frozenset()) for f in own}
    total = sum(prof["self"].get(f, 0) for f in own) + sum(
        cost for f in own for callee, cost in out_edges.get(f, ())
        if callee not in own and callee not in back)
    return per_fn, float(total)


def payers(fn: str, edges: dict[tuple[str, str], float], stop: set[str],
           depth: int = 12) -> dict[str, float]:
    """Who pays for `fn`'s instructions: its callers' shares (by the cost of their calls to
    it), followed up to the first function in `stop` (headway's own, and pingora's machinery
    that leads to headway's hooks); library code and pingora's helpers in between are walked
    through. Fractions summing to at most 1."""
    callers: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for (a, b), v in edges.items():
        if a != b and v > 0:
            callers[b].append((a, v))
    out: dict[str, float] = defaultdict(float)

    def walk(f: str, share: float, left: int, seen: frozenset) -> None:
        rows = callers.get(f, [])
        total = sum(v for _, v in rows)
        if not total or left == 0:
            out["(no caller)" if not total else f] += share
            return
        for a, v in rows:
            part = share * v / total
            if a in stop or a in seen:
                out[a] += part
            else:
                walk(a, part, left - 1, seen | {a})

    walk(fn, 1.0, depth, frozenset({fn}))
    return dict(out)


def crate_of(path: str) -> str:
    """The crate (or library) a source file belongs to: `tokio`, `http`, `std`, `headway`…"""
    if headway_file(path):
        return "headway (src/)"
    m = re.search(r"(?:/registry/src/[^/]+|/rust/deps)/([A-Za-z0-9_.-]+?)-\d+\.\d+[^/]*/", path)
    if m:
        return m.group(1)
    m = re.search(r"/rustc/[0-9a-f]+/library/([a-z_]+)/", path)
    if m:
        return "Rust std (" + m.group(1) + ")"
    if "memmove" in path or "memcpy" in path or "memset" in path:
        return "libc memcpy/memset"
    if path.startswith(("./", "/build/glibc")) or "sysdeps" in path or "nptl" in path:
        return "libc"
    return path or "?"


# (label, which function names count): calls per request worth watching
COUNTED = [
    ("allocations (mi_malloc*, mi_realloc*)",
     lambda f: f.startswith(("mi_malloc", "mi_realloc", "mi_zalloc", "mi_calloc"))),
    ("frees (mi_free)", lambda f: f == "mi_free"),
    ("memcpy / memmove", lambda f: f.startswith(("__memcpy", "__memmove"))),
    ("clock reads (clock_gettime)", lambda f: f.startswith("clock_gettime")),
    ("tokio timers made (sleep, Sleep::new_timeout)",
     lambda f: f in ("tokio::time::sleep::sleep", "tokio::time::sleep::Sleep::new_timeout")),
    ("SipHash writes (std HashMap, DefaultHasher)",
     lambda f: f.startswith("<core::hash::sip::Hasher<S> as core::hash::Hasher>::write")),
    ("header inserts (pingora_http::insert_header_value)",
     lambda f: f == "pingora_http::insert_header_value"),
    ("header appends (pingora_http::append_header_value)",
     lambda f: f == "pingora_http::append_header_value"),
    ("header names parsed (HeaderName::from_bytes)",
     lambda f: f == "http::header::name::HeaderName::from_bytes"),
    ("header maps grown (HeaderMap::try_grow)",
     lambda f: f.startswith("http::header::map::HeaderMap<T>::try_grow")),
]


def marginal(large: dict, small: dict, n: int) -> dict:
    return {k: (v - small.get(k, 0)) / n for k, v in large.items()}


def annotate(out_file: Path, dest: Path, top: int) -> None:
    """callgrind_annotate's inclusive view: its header and the top `top` functions."""
    src = out_file if out_file.exists() else Path(str(out_file) + ".gz")
    with tempfile.TemporaryDirectory() as tmp:
        if src.suffix == ".gz":
            plain = Path(tmp) / out_file.name
            with gzip.open(src, "rb") as fi, open(plain, "wb") as fo:
                shutil.copyfileobj(fi, fo)
        else:
            plain = src
        cmd = ["callgrind_annotate", "--inclusive=yes", "--threshold=100", "--auto=no",
               str(plain)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise Fail(f"{' '.join(cmd)}: {p.stderr[:2000]}")
    out, rows, in_table = [], 0, False
    for line in p.stdout.replace(str(plain), out_file.name).splitlines():
        if in_table:
            if line.startswith("---"):
                continue
            if not line.strip():
                if rows:
                    break
                continue
            out.append(line)
            rows += 1
            if rows >= top:
                break
        else:
            out.append(line)
            if "file:function" in line:
                in_table = True
    shown = " ".join(cmd[:-1] + [out_file.name])
    dest.write_text(f"$ {shown}   # its first {top} functions\n" + "\n".join(out) + "\n")


# ---------------------------------------------------------------------------------------------
# the report


def fmt(x: float) -> str:
    return f"{x:,.0f}"


_IMPL = re.compile(r"[\w:]+::<impl (\S+) for (\S+)>::")
_TYPE_PATH = re.compile(r"\b(?:[a-z_][a-z0-9_]*::)+([A-Z]\w*)")


def short(fn: str, width: int = 110) -> str:
    """For tables: type paths cut to the type's name (`<headway::proxy::Proxy as
    pingora_proxy::proxy_trait::ProxyHttp>` → `<Proxy as ProxyHttp>`); results.json keeps
    the whole names."""
    fn = _IMPL.sub(r"<\2 as \1>::", _TYPE_PATH.sub(r"\1", fn)).replace("|", "\\|")
    return fn if len(fn) <= width else fn[: width - 1] + "…"


def per_request(runs: list[dict], peer: str, rnd: int, small: int, large: int) -> float:
    get = {(r["requests"]): r["instructions"] for r in runs
           if r["peer"] == peer and r["round"] == rnd}
    return (get[large] - get[small]) / (large - small)


def report(args, out: Path, raw: Path, runs: list[dict], info: dict) -> tuple[str, str, dict]:
    n_s, n_l = info["small"], info["large"]
    dn = n_l - n_s
    rounds = sorted({r["round"] for r in runs})
    peers = [p for p in PROXY if any(r["peer"] == p for r in runs)]
    per: dict[str, list[float]] = {p: [per_request(runs, p, k, n_s, n_l) for k in rounds]
                                   for p in peers}
    med = {p: statistics.median(v) for p, v in per.items()}
    # the round whose figure is the median one: its outputs are the ones analysed
    med_round = {p: rounds[sorted(range(len(rounds)), key=lambda i: per[p][i])[len(rounds) // 2]]
                 for p in peers}
    analysis: dict = {"per_request": per, "median": med, "analysed_round": med_round}
    md = [f"# callgrind: instructions per keep-alive request ({info['date']})\n"]
    if info.get("smoke"):
        md.append("**SMOKE RUN — not results** (few requests: the figures are rough).\n")
    md.append(
        f"Marginal cost = (Ir with {n_l} requests − Ir with {n_s}) / {dn}: every thread of the "
        "proxy, one client connection, requests one at a time; the backend is nginx on "
        f"{BACKEND_IP}:{BACKEND_H2C if info.get('protocol') == 'h2c' else BACKEND_H1}. "
        f"{len(rounds)} round(s); the median is shown, with the "
        f"spread of the rounds. Protocol: {info.get('protocol', 'h1')} "
        f"({PROTOCOL_LABEL[info.get('protocol', 'h1')]}). headway's access log: "
        f"{'on (plain lines to a file)' if info.get('access_log') else 'off'}. Command: `{info['command']}`; tree: commit {info['commit']}"
        f"{' + uncommitted changes (raw/tree.diff.gz)' if info['dirty'] else ''}.\n")
    if info.get("stale_binary"):
        md.append(f"**Warning**: {info['stale_binary']}\n")
    md.append(f"| peer | Ir, {n_s} requests | Ir, {n_l} requests | instructions per request "
              "| rounds (min – max) |")
    md.append("|---|---:|---:|---:|---:|")
    for p in peers:
        k = med_round[p]
        get = {r["requests"]: r["instructions"] for r in runs
               if r["peer"] == p and r["round"] == k}
        md.append(f"| {PEER_LABEL[p]} | {fmt(get[n_s])} | {fmt(get[n_l])} | **{fmt(med[p])}** | "
                  f"{fmt(min(per[p]))} – {fmt(max(per[p]))} |")
    diff = None
    if "headway" in med and "floor" in med:
        diff = med["headway"] - med["floor"]
        diffs = [h - f for h, f in zip(per["headway"], per["floor"])]
        analysis["headway_minus_floor"] = diff
        md.append(f"| **headway − floor** (headway's own cost) | | | **{fmt(diff)}** "
                  f"({diff / med['floor'] * 100:+.1f}%) | {fmt(min(diffs))} – "
                  f"{fmt(max(diffs))} |")
    md.append("")
    table = "\n".join(md)
    md.append("| run | start s | requests s | idle pad s | SIGTERM → exit s | exit |")
    md.append("|---|---:|---:|---:|---:|---:|")
    for r in runs:
        md.append(f"| {r['peer']}-{r['requests']}-r{r['round']} | {r['start_seconds']} | "
                  f"{r['client_seconds']} | {r['idle_pad_seconds']} | {r['stop_seconds']} | "
                  f"{r['exit_code']} |")
    md.append("")

    profs = {p: {n: profile(raw / out_name(p, n, med_round[p])) for n in (n_s, n_l)}
             for p in peers}
    slf = {p: marginal(profs[p][n_l]["self"], profs[p][n_s]["self"], dn) for p in peers}
    inc = {p: marginal(inclusive(profs[p][n_l]), inclusive(profs[p][n_s]), dn) for p in peers}
    edges = {p: marginal(profs[p][n_l]["edges"], profs[p][n_s]["edges"], dn) for p in peers}

    if "headway" in peers and "floor" in peers:
        total_h = med["headway"]
        keys = set(slf["headway"]) | set(slf["floor"])
        d = sorted(((slf["headway"].get(k, 0) - slf["floor"].get(k, 0), k) for k in keys),
                   reverse=True)
        plus = sum(v for v, _ in d if v > 0)
        minus = sum(v for v, _ in d if v < 0)
        analysis["self_diff"] = [{"function": k, "diff": round(v, 1),
                                  "headway": round(slf["headway"].get(k, 0), 1),
                                  "floor": round(slf["floor"].get(k, 0), 1)}
                                 for v, k in d if abs(v) >= 20]

        own_h, back_h = own_and_back(profs["headway"][n_l]["edges"],
                                     profs["headway"][n_l]["self"])
        stop = own_h | back_h

        def top_payers(fn: str) -> str:
            if fn in stop:
                return ""
            rows = sorted(((v, a) for a, v in payers(fn, edges["headway"], stop).items()),
                          reverse=True)
            return "; ".join(f"`{short(a, 70)}` {v * 100:.0f}%" for v, a in rows[:2] if v >= 0.1)

        md.append(f"## Where headway − floor goes: self instructions per request, function by "
                  f"function (headway round {med_round['headway']} vs floor round "
                  f"{med_round['floor']})\n")
        md.append(
            "Each function's own instructions (not its callees') per request in headway minus "
            f"in the floor; all of them add up to headway − floor ({fmt(plus)} more in some, "
            f"{fmt(-minus)} fewer in others: {fmt(plus + minus)}). The two binaries inline "
            "differently, so a pingora function can gain what its neighbour loses (compare the "
            "pairs). Who pays, in headway, for a function that is neither headway's nor "
            "pingora's request machinery (std, http, hashbrown, the allocator, tokio, pingora's "
            "helpers): its callers' shares, followed up to the first function of headway's or "
            "of that machinery (in proportion to the cost of each call: an estimate, callgrind "
            "keeps no longer call chains).\n")
        md.append("| headway − floor | headway | floor | function | paid for by (headway run) |")
        md.append("|---:|---:|---:|---|---|")
        for v, k in d[: args.top_diff]:
            md.append(f"| {fmt(v)} | {fmt(slf['headway'].get(k, 0))} | "
                      f"{fmt(slf['floor'].get(k, 0))} | `{short(k, 90)}` | {top_payers(k)} |")
        md.append("")
        md.append(f"Fewest in headway (the other end of the same list): "
                  + "; ".join(f"`{short(k, 80)}` {fmt(v)}" for v, k in d[-8:][::-1]) + ".\n")

        cnt = {p: marginal(profs[p][n_l]["calls"], profs[p][n_s]["calls"], dn) for p in peers}
        watched = [(label, [f for f in set(cnt["headway"]) | set(cnt["floor"]) if pred(f)])
                   for label, pred in COUNTED]
        md.append("### Calls per request\n")
        md.append("How many times per request (marginal) a few functions that say what the "
                  "request path does were called, then the functions whose call count differs "
                  "most. An allocation, a clock read, a timer or a hash is a call each.\n")
        md.append("| what | headway | floor | headway − floor |")
        md.append("|---|---:|---:|---:|")
        analysis["calls_per_request"] = {}
        for label, fns in watched:
            h = sum(cnt["headway"].get(f, 0) for f in fns)
            f_ = sum(cnt["floor"].get(f, 0) for f in fns)
            analysis["calls_per_request"][label] = {"headway": round(h, 2), "floor": round(f_, 2)}
            md.append(f"| {label} | {h:.1f} | {f_:.1f} | {h - f_:+.1f} |")
        md.append("")
        cd = sorted(((cnt["headway"].get(k, 0) - cnt["floor"].get(k, 0), k)
                     for k in set(cnt["headway"]) | set(cnt["floor"])),
                    key=lambda x: -abs(x[0]))
        md.append("| calls / req, headway − floor | headway | floor | function |")
        md.append("|---:|---:|---:|---|")
        for v, k in cd[: args.top_calls]:
            md.append(f"| {v:+.1f} | {cnt['headway'].get(k, 0):.1f} | "
                      f"{cnt['floor'].get(k, 0):.1f} | `{short(k, 100)}` |")
        md.append("")

        by_crate: dict[str, dict[str, float]] = {}
        for p in ("headway", "floor"):
            files = marginal(profs[p][n_l]["self_by_file"], profs[p][n_s]["self_by_file"], dn)
            acc: dict[str, float] = defaultdict(float)
            for f, v in files.items():
                acc[crate_of(f)] += v
            by_crate[p] = acc
        crates = sorted(set(by_crate["headway"]) | set(by_crate["floor"]),
                        key=lambda k: -(by_crate["headway"].get(k, 0)
                                        - by_crate["floor"].get(k, 0)))
        analysis["by_crate"] = {k: {"headway": round(by_crate["headway"].get(k, 0), 1),
                                    "floor": round(by_crate["floor"].get(k, 0), 1)}
                                for k in crates}
        md.append("### The same difference by crate\n")
        md.append("Self instructions per request by the crate whose source they were compiled "
                  "from (line tables: inlined code counts in its own crate, whichever symbol it "
                  "landed in), headway and floor. This view does not depend on inlining.\n")
        md.append("| crate | headway | floor | headway − floor |")
        md.append("|---|---:|---:|---:|")
        for k in crates:
            h, f = by_crate["headway"].get(k, 0), by_crate["floor"].get(k, 0)
            if abs(h - f) >= 50 or max(h, f) >= 1000:
                md.append(f"| {k} | {fmt(h)} | {fmt(f)} | {fmt(h - f)} |")
        md.append("")

    if "headway" in peers:
        total = med["headway"]
        own_l, own_total_l = own_costs(profs["headway"][n_l])
        own_s, own_total_s = own_costs(profs["headway"][n_s])
        own = marginal(own_l, own_s, dn)
        own_total = (own_total_l - own_total_s) / dn
        rows = sorted(((v, f) for f, v in own.items()), reverse=True)
        analysis["headway_own_total_per_request"] = round(own_total, 1)
        analysis["headway_own_functions"] = [
            {"function": f, "own": round(v, 1), "inclusive": round(inc["headway"].get(f, 0), 1),
             "self": round(slf["headway"].get(f, 0), 1)} for v, f in rows[:100]]
        md.append(f"## headway's own functions, per request (marginal, {n_l} − {n_s} requests)\n")
        md.append(
            "Functions whose path is headway's (`headway::…`, `<headway::… as Trait>::…`, "
            "drops "
            "of headway's types; pingora's generic code instantiated with headway's types is "
            "pingora's). **own** = the function's instructions and those of what it calls, "
            "except calls into pingora's request machinery (what leads to pingora_proxy, which "
            "calls headway's hooks back: the whole request loop under the client-stream "
            "wrappers); "
            "**inclusive** = callgrind's, everything under it. Figures nest (a caller includes "
            "its callees). headway's functions in all, each instruction once: "
            f"**{fmt(own_total)} per request** ({own_total / total * 100:.1f}% of headway's "
            f"{fmt(total)}"
            + (f"; headway − floor = {fmt(diff)}" if diff is not None else "") + "). "
            "A wrapper that awaits pingora's boxed request future pays for moving it into its "
            "box (a memcpy of ~14 kB), which the floor pays in pingora's own `process_new`: "
            "compare with the table above. Code of headway's inlined into pingora's symbols "
            "counts as pingora's here; the per-file table below catches it.\n")
        md.append("| # | own / req | share of headway's total | inclusive / req | self / req "
                  "| function |")
        md.append("|---:|---:|---:|---:|---:|---|")
        for i, (v, f) in enumerate(rows[: args.top_own], 1):
            md.append(f"| {i} | {fmt(v)} | {v / total * 100:.1f}% | "
                      f"{fmt(inc['headway'].get(f, 0))} | {fmt(slf['headway'].get(f, 0))} | "
                      f"`{short(f)}` |")
        md.append("")

        every = sorted(((v, f) for f, v in inc["headway"].items()), reverse=True)
        md.append(f"## headway, every function, inclusive instructions per request: top "
                  f"{args.annotate_top}\n")
        md.append("callgrind_annotate's inclusive view, per request (start-up and shutdown "
                  "cancel out); recursive futures count once per level, so a figure can exceed "
                  "the total.\n")
        md.append("| inclusive / req | of total | self / req | function |")
        md.append("|---:|---:|---:|---|")
        for v, f in every[: args.annotate_top]:
            md.append(f"| {fmt(v)} | {v / total * 100:.0f}% | {fmt(slf['headway'].get(f, 0))} "
                      f"| `{short(f)}` |")
        md.append("")

        files = marginal(profs["headway"][n_l]["self_by_file"],
                         profs["headway"][n_s]["self_by_file"], dn)
        own_files = sorted(((v, f) for f, v in files.items() if headway_file(f)), reverse=True)
        own_sum = sum(v for v, _ in own_files)
        analysis["headway_src_self_per_request"] = round(own_sum, 1)
        analysis["self_by_file"] = [{"file": f, "self": round(v, 1)} for v, f in
                                    sorted(((v, f) for f, v in files.items()), reverse=True)[:100]]
        md.append("## headway, self instructions per request by source file\n")
        md.append("Line tables put inlined code in its own file. headway's `src/` files: "
                  f"{fmt(own_sum)} per request ({own_sum / total * 100:.1f}% of the total; the "
                  "std, hashbrown, http, prometheus… code they call counts in those crates' "
                  "files): " + ", ".join(f"`{Path(f).name}` {fmt(v)}" for v, f in own_files[:8])
                  + ".\n")
        md.append("| self / req | share | file |")
        md.append("|---:|---:|---|")
        for v, f in sorted(((v, f) for f, v in files.items()), reverse=True)[: args.top_files]:
            f_short = re.sub(r"^.*/registry/src/[^/]+/", "", f)
            f_short = re.sub(r"^/rustc/[0-9a-f]+/library/", "std: ", f_short)
            mark = " (headway)" if headway_file(f) else ""
            md.append(f"| {fmt(v)} | {v / total * 100:.1f}% | `{short(f_short, 100)}`{mark} |")
        md.append("")
        md.append(f"callgrind_annotate's own table (top {args.annotate_top} inclusive, the "
                  f"headway run with {n_l} requests, start-up included): "
                  f"`annotate-headway-{n_l}.txt`. Raw outputs, gzipped: "
                  "`raw/callgrind.out.<peer>-<requests>-r<round>.gz` (`callgrind_annotate` "
                  "reads them once gunzipped).\n")
    return table, "\n".join(md), analysis


# ---------------------------------------------------------------------------------------------
# main


def git(*argv: str) -> str:
    p = subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, text=True, timeout=30)
    return p.stdout


TREE_PATHS = ["src", "examples", "Cargo.toml", "Cargo.lock"]


def tree_state(raw: Path, binaries: list[Path]) -> dict:
    """HEAD, what differs from it, and whether a source file is newer than the binaries."""
    status = git("status", "--porcelain", "--", *TREE_PATHS).splitlines()
    text = git("diff", "HEAD", "--", *TREE_PATHS)
    for line in status:
        if line.startswith("?? "):
            for path in sorted((REPO / line[3:]).rglob("*") if (REPO / line[3:]).is_dir()
                               else [REPO / line[3:]]):
                if path.is_file():
                    text += f"\n=== untracked: {path.relative_to(REPO)}\n{path.read_text()}"
    if text:
        with gzip.open(raw / "tree.diff.gz", "wt") as f:
            f.write(text)
    built = min((b.stat().st_mtime for b in binaries if b.exists()), default=0)
    newer = [str(p.relative_to(REPO)) for root in ("src", "examples")
             for p in (REPO / root).rglob("*.rs") if p.stat().st_mtime > built]
    stale = ""
    if newer:
        stale = (f"{len(newer)} source file(s) changed after the binaries were built "
                 f"({', '.join(sorted(newer)[:5])}{'…' if len(newer) > 5 else ''}): "
                 "raw/tree.diff.gz may not be what was measured")
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "dirty": bool(status),
            "dirty_files": status, "stale_binary": stale}


def measure(args) -> tuple[dict, list[dict], Path, Path]:
    """Every round: each peer under callgrind, the long run first (its length pads the short)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = args.out or BENCH / "results" / f"{stamp}-callgrind"
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    bins = {"headway": args.headway_bin, "floor": args.floor_bin}
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": os.environ.get("BENCH_COMMAND", "bench/callgrind.sh"),
        **tree_state(raw, [bins[p] for p in args.peers]),
        "kernel": platform.release(), "cpu": cpu_model(), "cores": os.cpu_count(),
        "valgrind": tool_version(["valgrind", "--version"]),
        "nginx": tool_version(["nginx", "-v"]),
        "binaries": {p: {"path": str(bins[p]), "bytes": bins[p].stat().st_size,
                         "mtime": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                time.gmtime(bins[p].stat().st_mtime))}
                     for p in args.peers},
        "small": args.small, "large": args.large, "rounds": args.rounds,
        "access_log": args.access_log,
        "protocol": args.protocol,
        "padded": not args.no_pad, "smoke": args.smoke,
        "request": REQUEST.decode(),
    }
    env = allocator_env()
    info["allocator_env"] = env
    keys = None
    if args.protocol == "h2-tls":
        # a self-signed certificate for the run, removed at the end (never kept)
        keys = Path(tempfile.mkdtemp(prefix="headway-callgrind-tls-"))
        args.tls_files = (keys / "cert.pem", keys / "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=callgrind.bench", "-addext",
                        "subjectAltName=DNS:callgrind.bench", "-keyout", str(args.tls_files[1]),
                        "-out", str(args.tls_files[0])], check=True, capture_output=True,
                       timeout=60)
    log(f"results in {out}; allocator options for both peers: {env}")
    if info["stale_binary"]:
        log("WARNING: " + info["stale_binary"])
    runs: list[dict] = []
    backend = Backend(raw, BACKEND_IP, BACKEND_H1, BACKEND_H2C, 1, None)
    try:
        for rnd in range(1, args.rounds + 1):
            for peer in args.peers:
                big = run_one(args, peer, args.large, rnd, raw, env, None)
                runs.append(big)
                pad_to = None if args.no_pad else big["client_seconds"]
                runs.append(run_one(args, peer, args.small, rnd, raw, env, pad_to))
    finally:
        backend.stop()
        if keys:
            shutil.rmtree(keys, ignore_errors=True)
    return info, runs, out, raw


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=200, help="requests of the short run (200)")
    ap.add_argument("--large", type=int, default=2200, help="requests of the long run (2200)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, peers interleaved (3)")
    ap.add_argument("--peers", default="headway,floor", help="headway,floor (both)")
    ap.add_argument("--no-pad", action="store_true",
                    help="do not keep the short run alive as long as the long one")
    ap.add_argument("--smoke", action="store_true",
                    help="1 round of 20 and 220 requests: does it all run?")
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    ap.add_argument("--headway-bin", type=Path, default=target / "release/headway")
    ap.add_argument("--access-log", action="store_true",
                    help="headway with its access log on, to a file (off by default: the cost "
                         "of the request path alone)")
    ap.add_argument("--protocol", choices=PROTOCOLS, default="h1",
                    help="h1: HTTP/1.1 keep-alive (the default); h2c: HTTP/2 with prior "
                         "knowledge from the client and to an h2c nginx (the gRPC path); "
                         "h2-tls: HTTP/2 over TLS at the listener, HTTP/1.1 to nginx; both "
                         "driven by h2load, one connection, one stream at a time")
    ap.add_argument("--port-offset", type=int, default=0,
                    help="added to every port (backend, proxies, admin): two benches at once")
    ap.add_argument("--headway-conf", action="append", default=[], metavar="LINE",
                    help="a top-level line added to headway's conf (repeatable), e.g. "
                         "'fast_timeout_to_tokio_threshold_seconds: 900'")
    ap.add_argument("--split", choices=sorted(SPLIT_TARGET), default="none",
                    help="the matched route splits 90/10 between two clusters (the same nginx): "
                         "random by weight, or sticky by the request's User-Agent")
    ap.add_argument("--routes", type=int, default=1,
                    help="routes in headway's conf (1: `prefix: /`); see --route-at")
    ap.add_argument("--route-at", choices=["first", "last"], default="last",
                    help="where the route the requests match is among --routes (last)")
    ap.add_argument("--route-key", action="append", default=[], metavar="KEY",
                    help="a key added to the route the requests match (repeatable), e.g. "
                         "'headers: [{ name: host, exact: callgrind.bench }]' (requests carry "
                         "Host: callgrind.bench and User-Agent: headway-callgrind)")
    ap.add_argument("--floor-bin", type=Path,
                    default=target / "release/examples/pingora_floor")
    ap.add_argument("--out", type=Path,
                    help="results directory (bench/results/<timestamp>-callgrind)")
    ap.add_argument("--reanalyze", type=Path, metavar="DIR",
                    help="run nothing: write DIR's report again from its raw outputs")
    ap.add_argument("--start-timeout", type=float, default=180,
                    help="seconds for a proxy to listen under valgrind (180)")
    ap.add_argument("--request-timeout", type=float, default=30,
                    help="seconds for one answer (30)")
    ap.add_argument("--run-timeout", type=float, default=900,
                    help="seconds for all the requests of one run (900)")
    ap.add_argument("--stop-timeout", type=float, default=120,
                    help="seconds from SIGTERM to exit (120)")
    ap.add_argument("--top-diff", type=int, default=30, help="rows of headway − floor (30)")
    ap.add_argument("--top-calls", type=int, default=15, help="rows of call counts (15)")
    ap.add_argument("--top-own", type=int, default=25, help="headway functions listed (25)")
    ap.add_argument("--top-files", type=int, default=25, help="source files listed (25)")
    ap.add_argument("--annotate-top", type=int, default=30, help="inclusive rows (30)")
    args = ap.parse_args()
    args.tls_files = None
    if args.port_offset:
        global BACKEND_H1, BACKEND_H2C, ADMIN
        BACKEND_H1, BACKEND_H2C = BACKEND_H1 + args.port_offset, BACKEND_H2C + args.port_offset
        ADMIN = (ADMIN[0], ADMIN[1] + args.port_offset)
        for peer, (ip, port) in PROXY.items():
            PROXY[peer] = (ip, port + args.port_offset)
    if args.smoke:
        args.small, args.large, args.rounds = 20, 220, 1
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    for p in args.peers:
        if p not in PROXY:
            ap.error(f"unknown peer {p!r}: headway, floor")
    if not 0 < args.small < args.large:
        ap.error("--small must be below --large")
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    for tool in ("valgrind", "callgrind_annotate", "nginx",
                 *(("h2load", "curl") if args.protocol != "h1" else ())):
        if not shutil.which(tool):
            raise SystemExit(f"callgrind bench: {tool} not found (bench/callgrind.sh installs it)")

    if args.reanalyze:
        saved = json.loads((args.reanalyze / "results.json").read_text())
        info, runs, out = saved["info"], saved["runs"], args.reanalyze
        raw = out / "raw"
    else:
        for p in args.peers:
            b = args.headway_bin if p == "headway" else args.floor_bin
            if not b.exists():
                raise SystemExit(f"callgrind bench: {b} missing (bench/callgrind.sh builds it)")
        info, runs, out, raw = measure(args)
    runs.sort(key=lambda r: (r["round"], list(PROXY).index(r["peer"]), r["requests"]))
    n_l = info["large"]
    med_table, text, analysis = report(args, out, raw, runs, info)
    if any(r["peer"] == "headway" for r in runs):
        annotate(raw / out_name("headway", n_l, analysis["analysed_round"]["headway"]),
                 out / f"annotate-headway-{n_l}.txt", args.annotate_top)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(
        {"info": info, "runs": runs, "instructions_per_request": analysis["median"],
         "analysis": analysis}, indent=2) + "\n")
    for f in sorted(raw.glob("callgrind.out.*")):
        if f.suffix != ".gz":
            with open(f, "rb") as fi, gzip.open(str(f) + ".gz", "wb", 6) as fo:
                shutil.copyfileobj(fi, fo)
            f.unlink()
    print()
    print(med_table)
    log(f"written: {out}/results.md, results.json, annotate-headway-{n_l}.txt, raw/")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Fail as e:
        print(f"\ncallgrind bench FAILED: {e}", file=sys.stderr)
        sys.exit(1)
