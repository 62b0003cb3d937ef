#!/usr/bin/env bash
# rate_limit measured (issue 17): the allowed rate against the configured one under a bounded
# load; p50, p99 and CPU per request at a fixed 5,000 requests/s counted locally and in Redis
# (issue 28); and the gateway's RSS under 100,000 distinct keys with max_keys at its default and
# at 10,000. Writes bench/results/<timestamp>-ratelimit/ratelimit.md and .json (≈ 3 min).
#
#   bench/ratelimit.sh                                   release build, then measure
#   bench/ratelimit.sh --no-build --headway-bin target/debug/headway
#   bench/ratelimit.sh --help                            every option of bench/lib/ratelimit.py
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=lib/install.sh
source "$here/lib/install.sh"

bench_args "$here/lib/ratelimit.py" "$@"

if [ -n "$install" ]; then
    bench_need_cmd python3 python3
    bench_need_cmd nginx nginx
    bench_need_cmd h2load nghttp2-client
    bench_need_cmd redis-server redis-server
fi
[ -n "$build" ] && bench_build "$repo"
exec python3 "$here/lib/ratelimit.py" "${args[@]}"
