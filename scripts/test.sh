#!/usr/bin/env bash
# Runs every test: unit tests, and black-box tests that spawn the real headway binary against a
# DNS server and loopback backends the tests start themselves (and, where a Docker Engine is
# reachable, the docker-compose demo). First installs what the tests need and the machine lacks
# (scripts/setup.sh: a second when all is there). Extra arguments go to `cargo test`:
#
#   scripts/test.sh                          every test binary of the workspace
#   scripts/test.sh --test discovery         tests/discovery.rs only
#   scripts/test.sh --test k8s -- manifests  its tests whose name holds `manifests`
#
# A target of your own (--test, --lib, --bin, --doc, …) replaces `--all-targets`; -p/--package
# replaces `--workspace`. SKIP_SETUP=1 skips the set-up (a machine that has everything).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${SKIP_SETUP:-}" ] || scripts/setup.sh
targets=(--all-targets)
packages=(--workspace)
for a in "$@"; do
  case "$a" in
    --) break ;;
    --test|--test=*|--tests|--lib|--bin|--bin=*|--bins|--example|--example=*|--examples|--doc|--bench|--bench=*|--benches|--all-targets)
      targets=() ;;
    -p|-p*|--package|--package=*) packages=() ;;
  esac
done
# Black-box tests run the workspace's binaries (headway, hello-service, the demo driver).
cargo build --workspace --bins
log=$(mktemp)
# A test that cannot run here calls tests/support's `skip`, which leaves a file in this directory:
# libtest counts that test as passed, the summary below as skipped.
skips=$(mktemp -d)
trap 'rm -rf "$log" "$skips"' EXIT
status=0
HEADWAY_SKIP_DIR="$skips" cargo test "${packages[@]}" "${targets[@]}" --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
echo
# Skipped: the tests that recorded a skip and passed (moved out of "passed"), and #[ignore]d
# tests, each listed with its reason. Binaries are named as `skip` names them: `compose` for
# `Running tests/compose.rs (target/debug/deps/compose-0123abcd)`.
find "$skips" -type f -exec cat {} + | awk -F'\t' -v logfile="$log" '
  { skipped[$1 "::" $2] = $3 }
  function outcome(name, result) {
    if (result == "ok") ok[bin "::" name] = 1
    else if (result ~ /^ignored/) {
      why = result; sub(/^ignored,? ?/, "", why)
      ignored_list[++n_ignored] = bin "::" name ": ignored" (why == "" ? "" : ", " why)
    }
  }
  END {
    FS = "\n"
    while ((getline line < logfile) > 0) {
      if (line ~ /^ +Running /) {
        bin = line; sub(/^.*\//, "", bin); sub(/\)$/, "", bin); sub(/-[0-9a-f]+$/, "", bin)
      } else if (line ~ /^ +Doc-tests /) {
        bin = line; sub(/^ +Doc-tests /, "", bin); bin = "doc-tests " bin
      } else if (line ~ /^test .* \.\.\. /) {
        name = line; sub(/^test /, "", name); sub(/ \.\.\. .*$/, "", name)
        result = line; sub(/^.* \.\.\. /, "", result)
        if (result == "") pending = name; else outcome(name, result)
      } else if (pending != "" && line ~ /^(ok|FAILED|ignored.*)$/) {
        outcome(pending, line); pending = ""
      } else if (line ~ /^test result:/) {
        split(line, w, " ")
        for (i = 2; i in w; i++) {
          if (w[i] ~ /^passed/) p += w[i-1]
          if (w[i] ~ /^failed/) f += w[i-1]
          if (w[i] ~ /^ignored/) ig += w[i-1]
        }
      }
    }
    s = 0
    for (key in skipped) if (key in ok) { list[++s] = key ": " skipped[key] }
    printf "summary: %d passed, %d failed, %d skipped\n", p - s, f, s + ig
    for (i = 1; i <= s; i++) print "  skipped " list[i]
    for (i = 1; i <= n_ignored; i++) print "  skipped " ignored_list[i]
  }'
exit "$status"
