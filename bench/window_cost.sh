#!/usr/bin/env bash
# Instructions per Window::record (src/window.rs), the dashboard's cost on the request path:
# src/window.rs compiled as it is into a small crate of its own (opt-level 3, one codegen unit),
# run under `valgrind --tool=callgrind` with 100,000 and 1,100,000 records; per record = the
# difference / 1,000,000 (start-up cancels out). A request records twice (its route's window;
# its backend's on the attempt), plus once more for a failed attempt. See BENCHMARKS.md.
#
#   bench/window_cost.sh            3 rounds, medians (≈ 1 min)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 1; }
mkdir -p "$work/src"
cat > "$work/Cargo.toml" <<TOML
[package]
name = "window-cost"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
serde = { version = "1", features = ["derive"] }
[profile.release]
codegen-units = 1
debug = true
[workspace]
TOML
cat > "$work/src/main.rs" <<RS
#[path = "$repo/src/window.rs"]
#[allow(dead_code)]
mod window;
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let w = window::Window::default();
    for i in 0..n {
        // A route's record: one request, an error now and then, a latency in 0–5 ms.
        let latency = std::time::Duration::from_micros(i % 5000);
        w.record(1, u32::from(i % 100 == 0), std::hint::black_box(Some(latency)));
    }
    println!("{}", w.summary().requests);
}
RS
(cd "$work" && CARGO_TARGET_DIR="$work/target" cargo build -q --release)
bin="$work/target/release/window-cost"
count() {   # instructions of one run of $1 records
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bin" "$1" >/dev/null 2>"$work/vg.log"
    grep -E '^summary:|^totals:' "$work/cg.out" | head -1 | awk '{print $2}'
}
per=()
for round in 1 2 3; do
    short=$(count 100000); long=$(count 1100000)
    per+=("$(( (long - short) / 1000000 ))")
    echo "round $round: $short and $long instructions: $(( (long - short) / 1000000 )) per record"
done
median=$(printf '%s\n' "${per[@]}" | sort -n | sed -n 2p)
echo
echo "| measure | instructions |"
echo "|---|---:|"
echo "| one Window::record (median of 3 rounds: ${per[*]}) | **$median** |"
