#!/bin/sh
# Build a Debian bookworm base image with python3 from the Debian archive, for hosts that
# reach no image registry, and tag it (default raremem/base:bookworm). Needs root and
# debootstrap. Then build on it:  RAREMEM_BASE_IMAGE=raremem/base:bookworm docker compose build
set -eu
tag="${1:-raremem/base:bookworm}"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import - "$tag"
echo "built $tag"
