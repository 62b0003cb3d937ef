#!/usr/bin/env bash
# What the admin dashboard costs proxied traffic (issue 18): gateway CPU per 1,000 proxied
# requests under wrk with no dashboard open and with 10 dashboards polling /stats every second,
# plus the CPU of one /stats alone; 3 rounds, medians. See bench/lib/dashboard.py.
# Writes bench/results/<timestamp>-dashboard/ (results.md, results.json, logs).
#
#   bench/dashboard.sh              build if the tree changed, then 3 rounds of 10 s (≈ 2 min)
#   bench/dashboard.sh --no-build   measure target/release/headway as it is
#   bench/dashboard.sh --smoke      1 round of 2 s runs: does everything run?
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=lib/install.sh
source "$here/lib/install.sh"

bench_args "$here/lib/dashboard.py" "$@"
if [ -n "$install" ]; then
    bench_need_cmd python3 python3
    bench_need_cmd nginx nginx
    bench_need_cmd wrk wrk
fi
[ -n "$build" ] && bench_build "$repo"
exec python3 "$here/lib/dashboard.py" "${args[@]}"
