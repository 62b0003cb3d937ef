#!/usr/bin/env bash
# headway's own cost per request over a bare pingora ProxyHttp (issue 15), in callgrind
# instructions, which do not vary with the machine's load: headway and examples/pingora_floor,
# each under `valgrind --tool=callgrind` in front of the same nginx on loopback, 200 and 2,200
# keep-alive GETs one at a time through one connection; per request = the difference / 2,000.
# See bench/README.md, "What bench/callgrind.sh does".
# Writes bench/results/<timestamp>-callgrind/ (results.md, results.json, the top-30 inclusive
# functions of headway's long run, the raw callgrind outputs).
#
#   bench/callgrind.sh                  build if the tree changed, then 3 rounds (≈ 2 min)
#   bench/callgrind.sh --no-build       measure the binaries in target/release as they are
#                                       ($CARGO_TARGET_DIR/release when that is set)
#   bench/callgrind.sh --access-log     headway with its access log on (plain, to a file), as
#                                       users run it; off by default (the request path alone)
#   bench/callgrind.sh --protocol h2c   the gRPC path: h2load → h2c at headway → h2c nginx
#   bench/callgrind.sh --protocol h2-tls  h2load → HTTP/2 over TLS at headway → HTTP/1.1 nginx
#                                       (both: one connection, one stream at a time; the floor
#                                       speaks the same protocols)
#   bench/callgrind.sh --smoke          1 round of 20 and 220 requests: does everything run?
#   bench/callgrind.sh --reanalyze DIR  write DIR's report again from its raw outputs
#   bench/callgrind.sh --help           every option of bench/lib/callgrind.py
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=lib/install.sh
source "$here/lib/install.sh"

bench_args "$here/lib/callgrind.py" "$@"

if [ -n "$install" ]; then
    bench_need_cmd python3 python3
    bench_need_cmd nginx nginx
    bench_need_cmd valgrind valgrind   # callgrind_annotate comes with it
    bench_need_cmd h2load nghttp2-client   # --protocol h2c, h2-tls
    bench_need_cmd curl curl
fi
# the same build as bench/run.sh's (same packages, so the same features: neither rebuilds the
# other's binaries)
[ -n "$build" ] && bench_build "$repo"

export BENCH_COMMAND="bench/callgrind.sh${*:+ $*}"
exec python3 "$here/lib/callgrind.py" "${args[@]}"
