#!/usr/bin/env bash
# Runs every test: unit tests, and black-box tests that spawn the real headway binary against a
# DNS server and loopback backends the tests start themselves (and, where a Docker Engine is
# reachable, the docker-compose demo). Installs cmake if it is missing. Extra arguments go to
# `cargo test` (e.g. `scripts/test.sh --test discovery`).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null 2>&1; then
  echo "test: installing cmake (pingora builds zlib-ng with it)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cmake >/dev/null
fi
# Black-box tests run the workspace's binaries (headway, hello-service, the demo driver).
cargo build --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
echo
awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
