#!/usr/bin/env bash
# Builds the book (docs/ → docs/book/) and checks every relative link and #anchor of the README,
# the book's markdown and the built HTML (scripts/check_links.py). Installs mdBook
# $MDBOOK_VERSION from crates.io when `mdbook --version` is not that version (about 4 minutes
# on 2 cores, once; Debian bookworm has no mdbook package); a no-op rerun of this script takes
# about a second. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
MDBOOK_VERSION=${MDBOOK_VERSION:-0.5.4}
say() { echo "book: $*" >&2; }

if [ "$(mdbook --version 2>/dev/null || true)" != "mdbook v$MDBOOK_VERSION" ]; then
  # Without default features: no `serve`/`watch` (a web server and a file watcher) and no search
  # index, none of which a build needs.
  say "cargo install mdbook $MDBOOK_VERSION"
  cargo install mdbook --version "$MDBOOK_VERSION" --locked --no-default-features --quiet
fi
started=$SECONDS
out=$(mdbook build docs 2>&1)
# mdBook warns, and still exits 0, on what it renders wrongly (an unclosed HTML tag in a table):
# in CI a warning is a failure.
if grep -v '^ *INFO' <<<"$out" | grep -q .; then
  echo "$out" >&2
  say "mdbook build warned: fix the pages above"
  exit 1
fi
say "built docs/book/ in $((SECONDS - started)) s"
scripts/check_links.py --html docs/book
