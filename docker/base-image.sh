#!/usr/bin/env bash
# Makes the runtime base image from Debian's own packages, for machines that
# reach a Debian mirror but no image registry (CI): a minbase bookworm root
# with ca-certificates, imported as sealgate-base:bookworm. Build the gateway
# on it with --build-arg BASE=sealgate-base:bookworm.
# Usage: docker/base-image.sh [TAG] [MIRROR]
set -euo pipefail
tag=${1:-sealgate-base:bookworm}
mirror=${2:-http://deb.debian.org/debian}
docker=${DOCKER:-docker}
if "$docker" image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag already exists"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; exit 2; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror"
# What a runtime image does not need: package caches and documentation.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
tar -C "$root" -c . | "$docker" import - "$tag"
echo "imported $tag"
