#!/usr/bin/env bash
# The local demo, one command, no Docker and no cluster: a DNS server answering for service1 and
# service2 as cluster DNS answers for headless services, hello-service pods on 127.0.0.11-13 and
# 127.0.0.21-22, and headway in front of them (conf/headway.yaml). Then type `scale service1 5`,
# `status`, `help`, `quit` (or Ctrl-C). Arguments go to the driver: scripts/demo.sh --help.
# Installs cmake if it is missing (pingora builds zlib-ng with it).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null 2>&1; then
  echo "demo: installing cmake (pingora builds zlib-ng with it)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cmake >/dev/null
fi
# The debug profile: it builds faster, and a demo on loopback does not need the speed.
cargo build --workspace --bins
exec "${CARGO_TARGET_DIR:-target}/debug/headway-demo" "$@"
