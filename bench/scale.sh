#!/usr/bin/env bash
# headway at scale (issue 8): discovery CPU per refresh and RSS with a 1,000-record cluster (an
# answer that needs the TCP fallback) and with 100 clusters; RSS with 10,000 idle keep-alive
# client connections; idle RSS. Writes bench/results/<timestamp>-scale/scale.md and .json.
#
#   bench/scale.sh                 full: 60 s measuring windows (≈ 5 min)
#   bench/scale.sh --smoke         5 s windows, 3 s hold
#   bench/scale.sh --tests records --window 120
#   bench/scale.sh --help          every option of bench/lib/scale.py
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=lib/install.sh
source "$here/lib/install.sh"

BENCH_SMOKE=(--smoke --window 5 --hold 3)
bench_args "$here/lib/scale.py" "$@"

if [ -n "$install" ]; then
    bench_need_cmd python3 python3
    bench_need_cmd nginx nginx
fi
[ -n "$build" ] && bench_build "$repo"
bench_raise_nofile   # 10,000 connections: both ends need that many descriptors
bench_say "open files limit: $(ulimit -n)"

export BENCH_COMMAND="bench/scale.sh${*:+ $*}"
exec python3 "$here/lib/scale.py" "${args[@]}"
