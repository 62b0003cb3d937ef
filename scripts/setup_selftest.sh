#!/usr/bin/env bash
# Proves scripts/setup.sh on an interpreter that has none of the tests' Python peers: a fresh
# `python3 -m venv`, empty but for pip. Before: every peer fails to import (else this proves
# nothing). After one set-up: every peer imports, at its pinned version. After a second: nothing
# was installed again. Exits non-zero, saying which, when any of that is not so. Run by .ci/run;
# it downloads the peers from PyPI (pip's cache makes a rerun quicker).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
py=$work/venv/bin/python
say() { echo "setup_selftest: $*" >&2; }

# Each pin of scripts/python-peers.txt with the module it provides, checked in the venv: prints
# `ok`, `missing` or `version X` per pin. The module names are the tests' imports.
check() {
  "$py" - scripts/python-peers.txt <<'PY'
import importlib, sys
from importlib.metadata import PackageNotFoundError, version
modules = {"grpcio": "grpc", "websockets": "websockets", "selenium": "selenium",
           "pyjwt": "jwt", "cryptography": "cryptography",
           "kubernetes-validate": "kubernetes_validate"}
for line in open(sys.argv[1]):
    req = line.split("#", 1)[0].strip()
    if not req:
        continue
    name, want = req.split("==")
    if name not in modules:
        print(f"{req} unknown: add its module to scripts/setup_selftest.sh")
        continue
    try:
        importlib.import_module(modules[name])
        have = version(name)
    except (ImportError, PackageNotFoundError):
        print(f"{req} missing")
        continue
    print(f"{req} {'ok' if have == want else 'version ' + have}")
PY
}

before=$(check)
if grep -qv ' missing$' <<<"$before"; then
  say "the fresh venv is not fresh, or a pin has no module known here:"; echo "$before" >&2
  exit 1
fi
say "fresh venv: $(wc -l <<<"$before") pinned peers missing, as expected"

started=$SECONDS
scripts/setup.sh --python "$py" --no-apt
after=$(check)
if grep -qv ' ok$' <<<"$after"; then
  say "after scripts/setup.sh, not every pin is there:"; echo "$after" >&2
  exit 1
fi
say "after scripts/setup.sh ($((SECONDS - started)) s): every pin imports at its version"

again=$(scripts/setup.sh --python "$py" --no-apt 2>&1)
if grep -q 'pip install' <<<"$again"; then
  say "a second scripts/setup.sh installed again:"; echo "$again" >&2
  exit 1
fi
say "a second scripts/setup.sh installed nothing"
