#!/usr/bin/env bash
# What the `api_key` and `jwt` filters cost per request (issue 17), in callgrind instructions:
# headway under callgrind in front of nginx, a route with no filter, `api_key`, and `jwt` with
# HS256, RS256 and ES256 tokens (minted by tests/interop/mint_jwt.py: needs PyJWT and
# cryptography). Prints a table; writes bench/results/<timestamp>-auth/.
#
#   bench/auth.sh [--headway-bin PATH] [--small 100] [--large 600] [--rounds 3] [--cases …]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/install.sh
source "$here/lib/install.sh"
bench_need_cmd python3 python3
bench_need_cmd nginx nginx
bench_need_cmd valgrind valgrind
python3 -c "import jwt, cryptography" 2>/dev/null || python3 -m pip install -q pyjwt cryptography
exec python3 "$here/lib/auth_cost.py" "$@"
