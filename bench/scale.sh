#!/usr/bin/env bash
# headway at scale (issue 8): discovery CPU per refresh and RSS with a 1,000-record cluster (an
# answer that needs the TCP fallback) and with 100 clusters; RSS with 10,000 idle keep-alive
# client connections; idle RSS. Writes bench/results/<timestamp>-scale/scale.md and .json.
#
#   bench/scale.sh                 full: 60 s measuring windows (≈ 5 min)
#   bench/scale.sh --smoke         5 s windows, 3 s hold
#   bench/scale.sh --tests records --window 120
#   bench/scale.sh --help          every option of bench/lib/scale.py
#
# A whole cluster behind one gateway (issue 25), headway beside Envoy: 10, 100 and 1,000
# services (3 pods each, DNS refresh and HTTP health check every 5 s) and 1,000 services with
# 10,000 routes: time until the last route serves, RSS, idle CPU, DNS queries per second and
# their spread, CPU per request on the first and the last route (≈ 20 min).
#
#   bench/scale.sh services                       full: 60 s idle windows
#   bench/scale.sh services --smoke               5 s windows, 1 round
#   bench/scale.sh services --sizes 1000 --routes-case '' --peers headway
#   bench/scale.sh services --help                every option of bench/lib/scale_services.py
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=lib/install.sh
source "$here/lib/install.sh"

harness="$here/lib/scale.py"
if [ "${1:-}" = services ]; then
    shift
    harness="$here/lib/scale_services.py"
fi
BENCH_SMOKE=(--smoke --window 5 --hold 3)
[ "$harness" = "$here/lib/scale.py" ] || BENCH_SMOKE=(--smoke)
bench_args "$harness" "$@"

if [ -n "$install" ]; then
    bench_need_cmd python3 python3
    bench_need_cmd nginx nginx
    if [ "$harness" != "$here/lib/scale.py" ]; then
        bench_need_cmd wrk wrk
        command -v envoy >/dev/null && ENVOY_BIN=${ENVOY_BIN:-$(command -v envoy)}
        bench_install_envoy
    fi
fi
[ -n "$build" ] && bench_build "$repo"
bench_raise_nofile   # 10,000 connections: both ends need that many descriptors
bench_say "open files limit: $(ulimit -n)"

export BENCH_COMMAND="bench/scale.sh${*:+ $*}"
exec python3 "$harness" "${args[@]}"
