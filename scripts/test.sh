#!/usr/bin/env bash
# Runs every test: unit tests, and black-box tests that spawn the real headway binary against a
# DNS server and loopback backends the tests start themselves. Installs cmake if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null 2>&1; then
  echo "test: installing cmake (pingora builds zlib-ng with it)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cmake >/dev/null
fi
cargo build --workspace --bins
cargo test --workspace --no-fail-fast "$@"
