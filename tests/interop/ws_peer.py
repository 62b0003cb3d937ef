#!/usr/bin/env python3
"""WebSocket peer for tests/interop.rs: the `websockets` library (PyPI) as server and client.

    ws_peer.py server ADDR                  serve on ADDR (ip:port) until killed
    ws_peer.py client BASE                  every check against BASE (ws://host:port/prefix);
                                            one `ok NAME: detail` / `FAIL NAME: detail` line
                                            each, then `summary: N ok, M failed`; exit 1 on any
    ws_peer.py idle BASE QUIET_S WAIT_S     a connection quiet for QUIET_S twice (an echo after
                                            each), then quiet up to WAIT_S more: prints
                                            `idle-open …` after the echoes, then `idle-end …`
                                            saying whether and how the connection ended

The server handles every path by its last segment: `echo` echoes each message with the same
fragmentation (and obeys `close-me CODE REASON`, `ping-me`, `offer?`); `report` answers with
what the server saw of the connection whose `?id=` is given (its close code and reason).
Keep-alive pings are off on both sides: a quiet connection is really quiet.
"""
import asyncio
import json
import os
import sys
import time
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

SEEN = {}  # connection id -> how the server saw it end


def describe_close(ws, exc):
    rcvd = getattr(exc, "rcvd", None) if exc else ws.protocol.close_rcvd
    sent = getattr(exc, "sent", None) if exc else ws.protocol.close_sent
    return {
        "rcvd_code": rcvd.code if rcvd else None,
        "rcvd_reason": rcvd.reason if rcvd else None,
        "sent_code": sent.code if sent else None,
        "sent_reason": sent.reason if sent else None,
    }


async def handler(ws):
    url = urlsplit(ws.request.path)
    what = url.path.rsplit("/", 1)[-1]
    query = parse_qs(url.query)
    conn_id = query.get("id", [""])[0]
    if what == "report":
        deadline = time.monotonic() + 5
        while conn_id not in SEEN and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await ws.send(json.dumps(SEEN.get(conn_id)))
        await ws.close()
        return
    ending = None
    try:
        while True:
            fragments = []
            async for fragment in ws.recv_streaming():
                fragments.append(fragment)
            if isinstance(fragments[0], str):
                text = "".join(fragments)
                if text.startswith("close-me "):
                    _, code, reason = text.split(" ", 2)
                    await ws.close(int(code), reason)
                    break
                if text == "ping-me":
                    started = time.monotonic()
                    waiter = await ws.ping(b"from-server")
                    await asyncio.wait_for(waiter, 5)
                    await ws.send(f"pong-received {time.monotonic() - started:.4f}")
                    continue
                if text == "offer?":
                    await ws.send(ws.request.headers.get("Sec-WebSocket-Extensions", ""))
                    continue
            if len(fragments) > 1:
                # `send` of a list ends the message with an empty final frame of its own.
                await ws.send([f for f in fragments if f])
            else:
                await ws.send(fragments[0])
    except ConnectionClosed as e:
        ending = e
    await ws.wait_closed()
    if conn_id:
        seen = describe_close(ws, ending)
        seen["cause"] = type(ending.__cause__).__name__ if ending and ending.__cause__ else None
        SEEN[conn_id] = seen


async def run_server(addr):
    host, port = addr.rsplit(":", 1)
    async with serve(handler, host, int(port), max_size=None, ping_interval=None,
                     compression="deflate"):
        print(f"listening {addr}", flush=True)
        await asyncio.Future()


# ------------------------------------------------------------------------------------------
# Client
# ------------------------------------------------------------------------------------------

def options():
    return dict(max_size=None, ping_interval=None, compression="deflate", open_timeout=10,
                close_timeout=5, proxy=None)


def new_id(name):
    return f"{name}-{os.getpid()}-{time.monotonic_ns()}"


async def server_saw(base, conn_id):
    async with connect(f"{base}/report?id={conn_id}", **options()) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def recv_fragments(ws):
    """A message's frames, without the empty final frame `send` of a list ends it with."""
    fragments = []
    async for fragment in ws.recv_streaming():
        if fragment:
            fragments.append(fragment)
    return fragments


async def check_handshake(base):
    async with connect(f"{base}/echo", **options()) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert ws.response.status_code == 101, ws.response.status_code
        assert "permessage-deflate" in extensions, f"no permessage-deflate: {extensions!r}"
        await ws.send("offer?")
        offer = await asyncio.wait_for(ws.recv(), 10)
        assert "permessage-deflate" in offer, f"the server got the offer {offer!r}"
        return f"101, permessage-deflate negotiated ({extensions})"


async def check_messages(base):
    async with connect(f"{base}/echo", **options()) as ws:
        text = "héllo, wörld ✓ " * 10
        await ws.send(text)
        assert await asyncio.wait_for(ws.recv(), 10) == text
        binary = bytes(range(256))
        await ws.send(binary)
        assert await asyncio.wait_for(ws.recv(), 10) == binary
        # 1,000 small messages sent back to back, then read: order and count kept.
        for i in range(1000):
            await ws.send(f"n{i}")
        for i in range(1000):
            got = await asyncio.wait_for(ws.recv(), 10)
            assert got == f"n{i}", f"message {i} came back as {got!r}"
        return "text, binary, 1,000 pipelined messages in order"


async def check_large(base):
    async with connect(f"{base}/echo", **options()) as ws:
        noise = os.urandom(1 << 20)
        await ws.send(noise)
        got = await asyncio.wait_for(ws.recv(), 30)
        assert got == noise, f"1 MiB of random bytes came back as {len(got)} bytes"
        text = "abcdefgh" * (1 << 17)
        await ws.send(text)
        got = await asyncio.wait_for(ws.recv(), 30)
        assert got == text, f"1 MiB of text came back as {len(got)} characters"
        return "1 MiB random binary and 1 MiB compressible text, each way"


async def check_fragmented(base):
    async with connect(f"{base}/echo", **options()) as ws:
        parts = ["frag-one ", "frag-two ", "frag-three ", "frag-four ", "frag-five"]
        await ws.send(parts)
        got = await asyncio.wait_for(recv_fragments(ws), 10)
        assert got == parts, f"text fragments came back as {got!r}"
        blobs = [b"\x00" * 70000, b"\x01" * 3, b"\x02" * 100000]
        await ws.send(blobs)
        got = await asyncio.wait_for(recv_fragments(ws), 10)
        assert [len(g) for g in got] == [len(b) for b in blobs] and got == blobs, (
            f"binary fragments came back as {[len(g) for g in got]} bytes")
        return "a text message in 5 frames and a binary one in 3 (+ an empty final frame each), echoed frame for frame"


async def check_ping_pong(base):
    async with connect(f"{base}/echo", **options()) as ws:
        waiter = await ws.ping(b"from-client")
        latency = await asyncio.wait_for(waiter, 5)
        await ws.send("ping-me")
        got = await asyncio.wait_for(ws.recv(), 10)
        assert got.startswith("pong-received "), got
        return f"client ping answered in {latency * 1000:.1f} ms; server ping answered ({got})"


async def check_close(base, code, reason, by):
    conn_id = new_id(f"close-{code}-{by}")
    ws = await connect(f"{base}/echo?id={conn_id}", **options())
    await ws.send("before close")
    assert await asyncio.wait_for(ws.recv(), 10) == "before close"
    if by == "client":
        await ws.close(code, reason)
        client_rcvd = ws.protocol.close_rcvd
        assert client_rcvd is not None, "the server's close frame never came back"
        assert (client_rcvd.code, client_rcvd.reason) == (code, reason), (
            f"the server answered the close with {client_rcvd}")
    else:
        await ws.send(f"close-me {code} {reason}")
        try:
            got = await asyncio.wait_for(ws.recv(), 10)
            raise AssertionError(f"got {got!r} instead of the close")
        except ConnectionClosed as e:
            assert e.rcvd is not None, f"no close frame from the server: {e}"
            assert (e.rcvd.code, e.rcvd.reason) == (code, reason), f"client got {e.rcvd}"
            assert e.sent is not None and e.sent.code == code, f"client answered {e.sent}"
    seen = await server_saw(base, conn_id)
    assert seen is not None, "the server never saw the connection end"
    if by == "client":
        assert (seen["rcvd_code"], seen["rcvd_reason"]) == (code, reason), f"server saw {seen}"
    else:
        assert (seen["sent_code"], seen["sent_reason"], seen["rcvd_code"]) == (code, reason, code), (
            f"server saw {seen}")
    return f"close {code} {reason!r} by the {by}, seen by both ends"


async def client(base):
    checks = [
        ("handshake_deflate", check_handshake),
        ("messages", check_messages),
        ("large_1mib", check_large),
        ("fragmented", check_fragmented),
        ("ping_pong", check_ping_pong),
        ("close_1000_by_client", lambda b: check_close(b, 1000, "done", "client")),
        ("close_4001_by_client", lambda b: check_close(b, 4001, "bye from client", "client")),
        ("close_4001_by_server", lambda b: check_close(b, 4001, "bye from server", "server")),
    ]
    failed = 0
    for name, check in checks:
        started = time.monotonic()
        try:
            detail = await asyncio.wait_for(check(base), 60)
            print(f"ok {name}: {detail} ({time.monotonic() - started:.2f} s)", flush=True)
        except BaseException as e:  # every failure is reported, none stops the others
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
    print(f"summary: {len(checks) - failed} ok, {failed} failed", flush=True)
    return 1 if failed else 0


async def idle(base, quiet, wait):
    conn_id = new_id("idle")
    ws = await connect(f"{base}/echo?id={conn_id}", **options())
    for round_ in range(2):
        await asyncio.sleep(quiet)
        await ws.send(f"still here {round_}")
        got = await asyncio.wait_for(ws.recv(), 10)
        assert got == f"still here {round_}", got
    print(f"idle-open after 2 x {quiet} s quiet, each followed by an echo", flush=True)
    started = time.monotonic()
    try:
        got = await asyncio.wait_for(ws.recv(), wait)
        print(f"idle-end unexpected message {got!r}", flush=True)
        return 1
    except asyncio.TimeoutError:
        print(f"idle-end still-open after {time.monotonic() - started:.2f} s", flush=True)
        await ws.close(1000, "enough")
        seen = await server_saw(base, conn_id)
        print(f"idle-server {json.dumps(seen)}", flush=True)
        return 0
    except ConnectionClosed as e:
        after = time.monotonic() - started
        cause = type(e.__cause__).__name__ if e.__cause__ else "eof"
        frame = f"{e.rcvd.code} {e.rcvd.reason!r}" if e.rcvd else "none"
        print(f"idle-end closed after {after:.2f} s close-frame={frame} cause={cause}", flush=True)
        seen = await server_saw(base, conn_id)
        print(f"idle-server {json.dumps(seen)}", flush=True)
        return 0


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "server":
        asyncio.run(run_server(args[1]))
    elif len(args) == 2 and args[0] == "client":
        sys.exit(asyncio.run(client(args[1].rstrip("/"))))
    elif len(args) == 4 and args[0] == "idle":
        sys.exit(asyncio.run(idle(args[1].rstrip("/"), float(args[2]), float(args[3]))))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
