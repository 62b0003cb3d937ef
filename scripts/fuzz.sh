#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time each (default 60 s), on the stable
# toolchain: cargo-fuzz (libFuzzer) with `--sanitizer none`, which needs no nightly flag (see
# fuzz/README.md). Installs cargo-fuzz, cmake and a C++ compiler if they are missing. Exits
# non-zero if any target crashed; the crashing input is then in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [seconds-per-target]     e.g. scripts/fuzz.sh 600
#   FUZZ_TARGETS="router" scripts/fuzz.sh 30  only some targets
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [seconds-per-target]" >&2; exit 2 ;;
esac
read -r -a targets <<<"${FUZZ_TARGETS:-conf_loader router dns_refresh dns_answer}"

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake) # pingora-core builds zlib-ng with cmake
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)     # libfuzzer-sys compiles libFuzzer
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "fuzz: installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2
fi

cd fuzz
echo "fuzz: building ${targets[*]} (release, sanitizer-coverage, no sanitizer)"
for target in "${targets[@]}"; do
  cargo fuzz build -s none "$target"
done

status=0
crashed=0
for target in "${targets[@]}"; do
  # New inputs go to work/<target> (not committed); corpus/<target> holds the small seeds.
  mkdir -p "work/$target" "corpus/$target"
  log="target/fuzz-$target.log"
  echo "fuzz: $target for ${seconds}s"
  if cargo fuzz run -s none "$target" "work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1; then
    execs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log")
    rate=$(awk '/stat::average_exec_per_sec/ { print $2 }' "$log")
    echo "fuzz: $target ok: ${execs:-?} executions, ${rate:-?}/s, no crash"
  else
    status=1
    crashed=$((crashed + 1))
    echo "fuzz: $target FAILED (log: fuzz/$log)"
    grep -E -A4 "panicked at|ERROR: libFuzzer|SUMMARY" "$log" | head -40 || true
    grep -E "Test unit written to" "$log" || true
  fi
done
echo "fuzz: ${#targets[@]} targets, $crashed crashed"
exit "$status"
