#!/usr/bin/env bash
# push-images.sh -- `make push REGISTRY=host:port/prefix`: tag every role image for a registry
# and push it, with the version tag and `latest`.
#
#   make push REGISTRY=myregistry.azurecr.io/rqp          # docker login myregistry.azurecr.io first
#   REGISTRY=registry.internal:5000/rqp ENGINE=podman docker/push-images.sh
#   ROLES="processor" REGISTRY=... docker/push-images.sh
#
# Pushes <REGISTRY>/rqp-<role>:<version> and <REGISTRY>/rqp-<role>:latest for the images
# `make images` built (<RQP_IMAGE_PREFIX>rqp-<role>:<version>), then prints the two settings the
# VMs' compose/.env need to pull them: RQP_IMAGE_PREFIX=<REGISTRY>/ and RQP_VERSION=<version>.
# A registry without TLS is the engine's business: Docker's "insecure-registries" (daemon.json),
# podman's registries.conf (`insecure = true`; CONTAINERS_REGISTRIES_CONF names another file).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=docker/engine.sh
. docker/engine.sh

REGISTRY=${REGISTRY:-}
REGISTRY=${REGISTRY%/}
case "$REGISTRY" in
  "") echo "push-images: set REGISTRY=host[:port][/prefix], e.g. make push REGISTRY=myregistry.azurecr.io/rqp" >&2; exit 2 ;;
  *://*) echo "push-images: REGISTRY is host[:port][/prefix], without a scheme: got $REGISTRY" >&2; exit 2 ;;
esac
VERSION=${RQP_VERSION:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' shared/pyproject.toml | head -1)}
PREFIX=${RQP_IMAGE_PREFIX:-}
ROLES=${ROLES:-scheduler processor metrics-logger console}

t0=$(date +%s)
for role in $ROLES; do
  src="${PREFIX}rqp-$role:$VERSION"
  $ENGINE image inspect "$src" >/dev/null 2>&1 || { echo "push-images: no image $src; run 'make images' first" >&2; exit 2; }
  for tag in "$VERSION" latest; do
    dst="$REGISTRY/rqp-$role:$tag"
    $ENGINE tag "$src" "$dst"
    out=$($ENGINE push "$dst" 2>&1) || { echo "$out" >&2; echo "push-images: pushing $dst failed (logged in? TLS?)" >&2; exit 1; }
    echo "  pushed $dst"
  done
done
echo "push-images: done in $(( $(date +%s) - t0 ))s. On every VM, in compose/.env:"
echo "  RQP_IMAGE_PREFIX=$REGISTRY/"
echo "  RQP_VERSION=$VERSION"
