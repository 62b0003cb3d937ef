"""What the `api_key` and `jwt` filters cost per request, in callgrind instructions: headway
under `valgrind --tool=callgrind` in front of nginx (bench/lib/callgrind.py's runs, its own
ports), once per case, each case a route `/` with that filter (or none) and a request carrying
a valid credential; per request = (instructions of the long run - the short run's) / the
difference in requests. Tokens and keys come from tests/interop/mint_jwt.py (PyJWT).

Usage: auth_cost.py [--small 100] [--large 600] [--rounds 3] [--headway-bin PATH]
Prints a markdown table; writes bench/results/<stamp>-auth/results.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import callgrind as cg  # noqa: E402
from common import BENCH, REPO, Backend, log  # noqa: E402

# Ports and address of their own, so that bench/callgrind.sh may run at the same time.
cg.BACKEND_IP, cg.BACKEND_H1, cg.BACKEND_H2C = "127.0.10.3", 18485, 18486
cg.PROXY = {"headway": ("127.0.0.1", 18430)}
cg.ADMIN = ("127.0.0.1", 18492)


def filters(case: str, keys: Path) -> list[str]:
    """The route's `filters:` entries for a case."""
    jwt = (f"{{ name: jwt, jwks_file: {keys}/jwks.json, keys: [{{ kid: hs-1, alg: HS256, "
           f"file: {keys}/hs.secret }}], issuer: https://issuer.test, audiences: [orders], "
           "claims_to_headers: [{ claim: sub, header: x-user }] }")
    return {
        "none": [],
        "api_key": [f"{{ name: api_key, keys_file: {keys}/api-keys }}"],
        "jwt_rs256": [jwt],
        "jwt_es256": [jwt],
        "jwt_hs256": [jwt],
    }[case]


def credential(case: str, tokens: dict) -> str:
    if case == "api_key":
        return "x-api-key: ak-bench-0123456789abcdef\r\n"
    if case.startswith("jwt_"):
        return f"Authorization: Bearer {tokens[case.split('_')[1]]}\r\n"
    return ""


def conf_writer(case: str, keys: Path):
    def write(d: Path) -> Path:
        base = cg_headway_conf(d).read_text().splitlines()
        out = []
        for line in base:
            if line.strip() == "- { prefix: /, cluster: backend }":
                entries = filters(case, keys)
                line = ("    - { prefix: /, cluster: backend"
                        + (", filters: [" + ", ".join(entries) + "]" if entries else "") + " }")
            out.append(line)
        conf = d / "headway.yaml"
        conf.write_text("\n".join(out) + "\n")
        return conf
    return write


cg_headway_conf = cg.headway_conf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--large", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", default="none,api_key,jwt_hs256,jwt_rs256,jwt_es256")
    ap.add_argument("--headway-bin", type=Path, default=REPO / "target/release/headway")
    args = ap.parse_args()
    # run_one's own limits (bench/lib/callgrind.py's defaults)
    args.start_timeout, args.request_timeout, args.run_timeout, args.stop_timeout = 180, 30, 900, 120
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = BENCH / "results" / f"{stamp}-auth"
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    keys = Path(tempfile.mkdtemp(prefix="headway-auth-bench-"))
    subprocess.run([sys.executable, str(REPO / "tests/interop/mint_jwt.py"), str(keys),
                    "https://issuer.test", "orders"], check=True)
    (keys / "api-keys").write_text("bench:ak-bench-0123456789abcdef\n")
    tokens = json.loads((keys / "tokens.json").read_text())
    env = cg.allocator_env()
    runs: list[dict] = []
    backend = Backend(raw, cg.BACKEND_IP, cg.BACKEND_H1, cg.BACKEND_H2C, 1, None)
    try:
        for rnd in range(1, args.rounds + 1):
            for case in cases:
                cg.headway_conf = conf_writer(case, keys)
                cg.REQUEST = ("GET / HTTP/1.1\r\nHost: callgrind.bench\r\n"
                              f"User-Agent: headway-callgrind\r\n{credential(case, tokens)}\r\n"
                              ).encode()
                # The short run is kept alive as long as the long one (callgrind.py's idle
                # pad), so that timer-driven work cancels out of the difference.
                big = cg.run_one(args, "headway", args.large, rnd, raw / case, env, None)
                small = cg.run_one(args, "headway", args.small, rnd, raw / case, env,
                                   big["client_seconds"])
                runs += [{**big, "case": case}, {**small, "case": case}]
    finally:
        backend.stop()
    per: dict[str, list[float]] = {}
    for case in cases:
        for rnd in range(1, args.rounds + 1):
            big = next(r for r in runs if (r["case"], r["round"], r["requests"]) ==
                       (case, rnd, args.large))
            small = next(r for r in runs if (r["case"], r["round"], r["requests"]) ==
                         (case, rnd, args.small))
            per.setdefault(case, []).append(
                (big["instructions"] - small["instructions"]) / (args.large - args.small))
    base = statistics.median(per["none"]) if "none" in per else None
    lines = ["| route | instructions per request | over no filter | rounds |",
             "|---|---:|---:|---|"]
    for case in cases:
        med = statistics.median(per[case])
        extra = f"+{med - base:,.0f}" if base is not None and case != "none" else ""
        spread = " – ".join(f"{x:,.0f}" for x in sorted(per[case]))
        lines.append(f"| {case} | {med:,.0f} | {extra} | {spread} |")
    table = "\n".join(lines)
    (out / "results.json").write_text(json.dumps(
        {"small": args.small, "large": args.large, "rounds": args.rounds,
         "per_request": per, "runs": runs}, indent=2) + "\n")
    (out / "results.md").write_text(table + "\n")
    print(table)
    log(f"written: {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except cg.Fail as e:
        print(f"\nauth bench FAILED: {e}", file=sys.stderr)
        sys.exit(1)
