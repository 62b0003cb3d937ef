#!/usr/bin/env bash
# Discovery at scale (issue 25): N headless services of 3 pods each, DNS refresh and an HTTP
# health check every 5 s, headway beside Envoy 1.40: time until the last route serves, RSS,
# idle CPU, DNS queries per second and their peak per 10 ms. Writes
# bench/results/<timestamp>-dns-scale/dns-scale.md and .json.
#
#   bench/dns_scale.sh                          100 and 1,000 services, 60 s idle windows
#   bench/dns_scale.sh --smoke                  5 s windows
#   bench/dns_scale.sh --services 1000 --peers headway
#   bench/dns_scale.sh --help                   every option of bench/lib/dns_scale.py
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=lib/install.sh
source "$here/lib/install.sh"

BENCH_SMOKE=(--smoke)
bench_args "$here/lib/dns_scale.py" "$@"

if [ -n "$install" ]; then
    bench_need_cmd python3 python3
    bench_need_cmd nginx nginx
fi
[ -n "$build" ] && bench_build "$repo"
bench_raise_nofile
exec python3 "$here/lib/dns_scale.py" "${args[@]}"
