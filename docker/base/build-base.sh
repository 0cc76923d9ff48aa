#!/usr/bin/env bash
# Builds a local Debian base image with debootstrap and `docker import`, for
# machines that reach Debian's package mirror but no image registry.
#   bash docker/base/build-base.sh [TAG]       (default onvm/base:bookworm)
# Where a registry is reachable, debian:bookworm-slim does the same job:
#   onvm images build --base debian:bookworm-slim
# Needs root, debootstrap and a running Docker engine.  Skips if TAG exists.
set -euo pipefail
TAG=${1:-onvm/base:bookworm}
SUITE=${ONVM_BASE_SUITE:-bookworm}
MIRROR=${ONVM_BASE_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "onvm base: $TAG is there"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "onvm base: debootstrap is missing; run: apt-get install debootstrap" >&2; exit 1; }
root=$(mktemp -d /var/tmp/onvm-base.XXXXXX)
trap 'rm -rf --one-file-system "$root"' EXIT
echo "onvm base: debootstrap $SUITE from $MIRROR (a few minutes)"
debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# What an image build does not need: apt caches, docs.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
tar --numeric-owner -C "$root" -c . | docker import --change 'CMD ["/bin/bash"]' - "$TAG" >/dev/null
echo "onvm base: built $TAG"
