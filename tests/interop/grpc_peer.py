#!/usr/bin/env python3
"""gRPC peer for tests/interop.rs: grpcio (PyPI) as server and as client, no generated code.

    grpc_peer.py server ADDR            serve interop.Echo on ADDR (ip:port) until killed
    grpc_peer.py client TARGET          run every check against TARGET (ip:port), print one
                                        `ok NAME: detail` or `FAIL NAME: detail` line per check,
                                        then `summary: N ok, M failed`; exit 1 if any failed

    grpc_peer.py server ADDR CHAIN KEY  the same over TLS (PEM files; ALPN h2)
    grpc_peer.py client TARGET RUN CA NAME
                                        the same over TLS, trusting CA, verifying NAME

The service is registered with grpcio's generic handlers and bytes in, bytes out (no protobuf,
no protoc): /interop.Echo/Echo, Fail, Count (server streaming), Sum (client streaming), Chat
(bidi), Slow, Cancel and Deadline (both: sleep until done or no longer active), Report (what
the server saw of a call, by id). Every check here runs the same way straight against the
server (the control) and through the gateway.
"""
import json
import queue
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "interop.Echo"
BIN_BLOB = b"\x00\x01\xfe\xff binary"
STATUS_CASES = [
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "INTERNAL",
    "UNAUTHENTICATED",
]


# ------------------------------------------------------------------------------------------
# Server
# ------------------------------------------------------------------------------------------

class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = {}  # id -> what the server saw of a Cancel / Deadline call
        self.active = 0
        self.peak = 0
        self.peers = set()  # client connections (ip:port) that carried Slow calls


STATE = State()


def echo(request, context):
    md = dict(context.invocation_metadata())
    context.send_initial_metadata(
        (
            ("x-server-meta", "hello"),
            ("x-echo-client-meta", md.get("x-client-meta", "")),
        )
    )
    context.set_trailing_metadata(
        (
            ("x-trailer", "bye"),
            ("x-trailer-bin", BIN_BLOB),
            ("x-echo-client-bin", md.get("x-client-bin", b"")),
        )
    )
    return request


def fail(request, context):
    what = json.loads(request)
    context.set_trailing_metadata((("x-fail-trailer", what["code"].lower()),))
    context.abort(grpc.StatusCode[what["code"]], what["details"])


def count(request, context):
    what = json.loads(request)
    context.set_trailing_metadata((("x-count", str(what["n"])),))
    for i in range(what["n"]):
        yield (f"{i}:".encode() + b"x" * what["size"])


def total(request_iterator, context):
    messages = 0
    size = 0
    for message in request_iterator:
        messages += 1
        size += len(message)
    return json.dumps({"messages": messages, "bytes": size}).encode()


def chat(request_iterator, context):
    for message in request_iterator:
        yield b"re:" + message.upper()


def slow(request, context):
    with STATE.lock:
        STATE.active += 1
        STATE.peak = max(STATE.peak, STATE.active)
        STATE.peers.add(context.peer())
    try:
        time.sleep(0.2)
        return b"served:" + request
    finally:
        with STATE.lock:
            STATE.active -= 1


def sleeper(request, context):
    """Sleeps `ms` in 10 ms steps while the call is active; records how it ended."""
    what = json.loads(request)
    started = time.monotonic()
    remaining = context.time_remaining()
    outcome = "completed"
    while time.monotonic() - started < what["ms"] / 1000:
        if not context.is_active():
            outcome = "inactive"
            break
        time.sleep(0.01)
    with STATE.lock:
        STATE.calls[what["id"]] = {
            "outcome": outcome,
            "after_ms": round((time.monotonic() - started) * 1000),
            "deadline_s": None if remaining is None or remaining > 1e6 else round(remaining, 3),
        }
    return b"slept"


def report(request, context):
    key = request.decode()
    with STATE.lock:
        if key == "peak":
            value = {"calls": STATE.peak, "connections": len(STATE.peers)}
            STATE.peak = 0
            STATE.peers = set()
        else:
            value = STATE.calls.get(key)
    return json.dumps(value).encode()


def serve(addr, tls=None):
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Sum": grpc.stream_unary_rpc_method_handler(total),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Cancel": grpc.unary_unary_rpc_method_handler(sleeper),
        "Deadline": grpc.unary_unary_rpc_method_handler(sleeper),
        "Report": grpc.unary_unary_rpc_method_handler(report),
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=260),
        handlers=[grpc.method_handlers_generic_handler(SERVICE, handlers)],
        options=[("grpc.max_receive_message_length", 8 << 20)],
    )
    if tls:
        with open(tls[0], "rb") as chain, open(tls[1], "rb") as key:
            credentials = grpc.ssl_server_credentials([(key.read(), chain.read())])
        bound = server.add_secure_port(addr, credentials)
    else:
        bound = server.add_insecure_port(addr)
    if bound == 0:
        print(f"cannot bind {addr}", file=sys.stderr, flush=True)
        sys.exit(2)
    server.start()
    print(f"listening {addr}", flush=True)
    server.wait_for_termination()


# ------------------------------------------------------------------------------------------
# Client
# ------------------------------------------------------------------------------------------

def method(channel, kind, name):
    factory = getattr(channel, kind)
    return factory(f"/{SERVICE}/{name}")


def check_unary(channel):
    call = method(channel, "unary_unary", "Echo")
    payload = b"hello through the gateway"
    response, outcome = call.with_call(
        payload,
        timeout=10,
        metadata=(("x-client-meta", "abc"), ("x-client-bin", b"\xff\x00client")),
    )
    assert response == payload, f"response {response!r}"
    initial = dict(outcome.initial_metadata())
    trailing = dict(outcome.trailing_metadata())
    assert initial.get("x-server-meta") == "hello", f"initial metadata {initial}"
    assert initial.get("x-echo-client-meta") == "abc", f"client metadata lost: {initial}"
    assert trailing.get("x-trailer") == "bye", f"trailing metadata {trailing}"
    assert trailing.get("x-trailer-bin") == BIN_BLOB, f"binary trailer {trailing}"
    assert trailing.get("x-echo-client-bin") == b"\xff\x00client", f"binary metadata {trailing}"
    assert outcome.code() == grpc.StatusCode.OK, outcome.code()
    return f"echo, initial and trailing metadata (text and -bin) intact"


def check_unary_large(channel):
    call = method(channel, "unary_unary", "Echo")
    payload = bytes(range(256)) * 4096  # 1 MiB
    response = call(payload, timeout=20)
    assert response == payload, f"1 MiB echo came back as {len(response)} bytes"
    return "1 MiB each way"


def check_server_streaming(channel):
    call = method(channel, "unary_stream", "Count")
    n, size = 300, 1000
    responses = call(json.dumps({"n": n, "size": size}).encode(), timeout=20)
    got = list(responses)
    assert len(got) == n, f"{len(got)} messages of {n}"
    for i, message in enumerate(got):
        assert message == f"{i}:".encode() + b"x" * size, f"message {i} is {message[:20]!r}…"
    trailing = dict(responses.trailing_metadata())
    assert trailing.get("x-count") == str(n), f"trailing metadata {trailing}"
    assert responses.code() == grpc.StatusCode.OK, responses.code()
    return f"{n} messages in order, then the trailers"


def check_client_streaming(channel):
    call = method(channel, "stream_unary", "Sum")
    sizes = [(i * 37) % 5000 for i in range(200)]
    response = call(iter([b"y" * s for s in sizes]), timeout=20)
    got = json.loads(response)
    assert got == {"messages": len(sizes), "bytes": sum(sizes)}, f"server counted {got}"
    return f"{len(sizes)} messages, {sum(sizes)} bytes counted by the server"


def check_bidi(channel):
    call = method(channel, "stream_stream", "Chat")
    outbox = queue.Queue()
    rounds = 50

    def requests():
        while True:
            message = outbox.get(timeout=10)
            if message is None:
                return
            yield message

    outbox.put(b"m0")
    responses = call(requests(), timeout=20)
    for i in range(rounds):
        reply = next(responses)
        assert reply == f"re:M{i}".encode(), f"round {i}: {reply!r}"
        outbox.put(f"m{i + 1}".encode() if i + 1 < rounds else None)
    rest = list(responses)
    assert rest == [], f"unexpected replies {rest!r}"
    assert responses.code() == grpc.StatusCode.OK, responses.code()
    return f"{rounds} lock-step rounds (each reply before the next request)"


def check_status_codes(channel):
    call = method(channel, "unary_unary", "Fail")
    for code in STATUS_CASES:
        details = f"détails of {code}: 100% sure ✓, with\ttab"
        try:
            call(json.dumps({"code": code, "details": details}).encode(), timeout=10)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode[code], f"{code}: got {e.code()} {e.details()!r}"
            assert e.details() == details, f"{code}: details {e.details()!r}"
            trailing = dict(e.trailing_metadata())
            assert trailing.get("x-fail-trailer") == code.lower(), f"{code}: trailers {trailing}"
        else:
            raise AssertionError(f"{code}: the call succeeded")
    missing = method(channel, "unary_unary", "NoSuchMethod")
    try:
        missing(b"", timeout=10)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNIMPLEMENTED, f"NoSuchMethod: {e.code()} {e.details()!r}"
    else:
        raise AssertionError("NoSuchMethod succeeded")
    return f"{len(STATUS_CASES)} codes with non-ASCII details and trailers, and UNIMPLEMENTED"


def server_report(channel, key, wait_s=5.0):
    call = method(channel, "unary_unary", "Report")
    deadline = time.monotonic() + wait_s
    while True:
        got = json.loads(call(key.encode(), timeout=5))
        if got is not None or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def check_deadline(channel, run):
    call = method(channel, "unary_unary", "Deadline")
    key = f"deadline-{run}"
    started = time.monotonic()
    try:
        call(json.dumps({"id": key, "ms": 3000}).encode(), timeout=0.5)
    except grpc.RpcError as e:
        took = time.monotonic() - started
        assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, f"{e.code()} {e.details()!r}"
        assert took < 2.0, f"DEADLINE_EXCEEDED only after {took:.2f} s"
    else:
        raise AssertionError("a 3 s call with a 0.5 s deadline succeeded")
    seen = server_report(channel, key)
    assert seen is not None, "the server never saw the call end"
    assert seen["deadline_s"] is not None and seen["deadline_s"] <= 0.6, (
        f"the server saw no deadline (grpc-timeout lost?): {seen}")
    assert seen["outcome"] == "inactive" and seen["after_ms"] < 1500, (
        f"the server's call did not end at the deadline: {seen}")
    return f"DEADLINE_EXCEEDED after {took:.2f} s; server saw {seen}"


def check_cancel(channel, run):
    call = method(channel, "unary_unary", "Cancel")
    key = f"cancel-{run}"
    future = call.future(json.dumps({"id": key, "ms": 4000}).encode(), timeout=20)
    time.sleep(0.4)
    assert future.cancel(), "cancel() refused"
    assert future.cancelled(), "not cancelled"
    try:
        future.result(timeout=5)
    except grpc.FutureCancelledError:
        pass
    seen = server_report(channel, key)
    assert seen is not None, "the server never saw the call end"
    assert seen["outcome"] == "inactive" and seen["after_ms"] < 2500, (
        f"the cancel did not reach the server (it ran on): {seen}")
    return f"cancelled after 0.4 s; server saw {seen}"


def check_concurrent(channel, run):
    call = method(channel, "unary_unary", "Slow")
    n = 200
    pending = [call.future(f"{run}-{i}".encode(), timeout=30) for i in range(n)]
    wrong = []
    for i, future in enumerate(pending):
        try:
            got = future.result(timeout=30)
        except grpc.RpcError as e:
            wrong.append(f"{i}: {e.code()} {e.details()!r}")
            continue
        if got != f"served:{run}-{i}".encode():
            wrong.append(f"{i}: got {got!r}")
    assert not wrong, f"{len(wrong)} of {n} wrong: {wrong[:5]}"
    peak = server_report(channel, "peak")
    return (f"{n} calls at once, each got its own answer; the server had at most "
            f"{peak['calls']} at once, over {peak['connections']} connection(s)")


def client(target, run, tls=None):
    options = [
        ("grpc.enable_http_proxy", 0),
        ("grpc.max_receive_message_length", 8 << 20),
        ("grpc.max_send_message_length", 8 << 20),
    ]
    checks = [
        ("unary", check_unary),
        ("unary_1mib", check_unary_large),
        ("server_streaming", check_server_streaming),
        ("client_streaming", check_client_streaming),
        ("bidi", check_bidi),
        ("status_codes", check_status_codes),
        ("deadline", lambda ch: check_deadline(ch, run)),
        ("cancel", lambda ch: check_cancel(ch, run)),
        ("concurrent_200", lambda ch: check_concurrent(ch, run)),
    ]
    failed = 0
    if tls:
        with open(tls[0], "rb") as ca:
            credentials = grpc.ssl_channel_credentials(root_certificates=ca.read())
        options.append(("grpc.ssl_target_name_override", tls[1]))
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    with channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        for name, check in checks:
            started = time.monotonic()
            try:
                detail = check(channel)
                print(f"ok {name}: {detail} ({time.monotonic() - started:.2f} s)", flush=True)
            except Exception as e:  # every failure is reported, none stops the others
                failed += 1
                detail = f"{type(e).__name__}: {e}"
                if isinstance(e, grpc.RpcError):
                    detail += f" [{e.code()} {e.details()!r}]"
                print(f"FAIL {name}: {detail}", flush=True)
    print(f"summary: {len(checks) - failed} ok, {failed} failed", flush=True)
    return 1 if failed else 0


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "server":
        serve(sys.argv[2], sys.argv[3:5] if len(sys.argv) >= 5 else None)
    elif len(sys.argv) >= 3 and sys.argv[1] == "client":
        run = sys.argv[3] if len(sys.argv) > 3 else "run"
        sys.exit(client(sys.argv[2], run, sys.argv[4:6] if len(sys.argv) >= 6 else None))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
