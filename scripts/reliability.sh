#!/usr/bin/env bash
# Reruns the chaos suite (tests/chaos.rs: the real binary, a real DNS server, loopback pods,
# bounded concurrent load) and writes its figures into RELIABILITY.md, between the markers.
#   scripts/reliability.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo build --workspace --bins
HEADWAY_RELIABILITY_OUT="$out" cargo test -p headway --test chaos -- --test-threads=1
python3 - "$out" <<'PY'
import json, sys, datetime, platform, os
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows.sort(key=lambda r: r["scenario"])
table = ["| scenario | requests sent | failed | notes |", "|---|---:|---:|---|"]
for r in rows:
    table.append(f"| {r['scenario']} | {r['sent']} | {r['failed']} | {r['notes']} |")
stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
block = "\n".join([
    "<!-- chaos:begin (written by scripts/reliability.sh; edit the script, not this table) -->",
    f"Last run: {stamp}, {os.cpu_count()} cores, {platform.system()} {platform.release()}.",
    "",
    *table,
    "<!-- chaos:end -->",
])
path = "RELIABILITY.md"
text = open(path).read()
start, end = text.index("<!-- chaos:begin"), text.index("<!-- chaos:end -->") + len("<!-- chaos:end -->")
open(path, "w").write(text[:start] + block + text[end:])
print(f"reliability: {len(rows)} scenarios written to {path}")
PY
