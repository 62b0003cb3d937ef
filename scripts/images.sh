#!/usr/bin/env bash
# Builds the `headway` and `hello-service` images from binaries built on this machine, without
# pulling any base image (for machines with no container registry, such as CI here).
#
# Each image is a minimal root filesystem: the stripped binary, the shared libraries it links to
# (found with ldd: glibc's loader, libc, libm, libgcc_s), a non-root user 10001, a conf, and a
# writable /tmp — packed with tar and loaded with `docker import`. Users with a registry build
# the same images from the Dockerfile instead (`docker-compose build`).
#
#   scripts/images.sh [BIN_DIR]     BIN_DIR defaults to target/release; TAG=latest by default
set -euo pipefail
cd "$(dirname "$0")/.."
BIN_DIR=${1:-target/release}
TAG=${TAG:-latest}

rootfs_with() {
  local root=$1 bin=$2
  mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp"
  chmod 1777 "$root/tmp"
  strip -o "$root/usr/local/bin/$bin" "$BIN_DIR/$bin" 2>/dev/null || cp "$BIN_DIR/$bin" "$root/usr/local/bin/$bin"
  # The loader and every library the binary needs, at the paths the binary expects.
  for lib in $(ldd "$BIN_DIR/$bin" | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nheadway:x:10001:10001:headway:/nonexistent:/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nheadway:x:10001:\n' > "$root/etc/group"
}

import() {
  local root=$1 image=$2; shift 2
  tar -C "$root" --owner=0 --group=0 -c . | docker import "$@" - "$image" >/dev/null
  echo "images: built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1/1e6}'))"
}

for bin in headway hello-service; do
  [ -x "$BIN_DIR/$bin" ] || { echo "images: $BIN_DIR/$bin is missing: build it first (cargo build --release --bins)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rootfs_with "$work/headway" headway
mkdir -p "$work/headway/etc/headway"
cp conf/compose/headway.yaml "$work/headway/etc/headway/headway.yaml"
import "$work/headway" "headway:$TAG" \
  --change 'USER 10001:10001' \
  --change 'EXPOSE 8000 9901' \
  --change 'ENTRYPOINT ["/usr/local/bin/headway"]' \
  --change 'CMD ["-c", "/etc/headway/headway.yaml"]'

rootfs_with "$work/hello" hello-service
import "$work/hello" "hello-service:$TAG" \
  --change 'USER 10001:10001' \
  --change 'ENV LISTEN_ADDR=0.0.0.0:8080 SERVICE_NAME=1' \
  --change 'EXPOSE 8080' \
  --change 'ENTRYPOINT ["/usr/local/bin/hello-service"]'
