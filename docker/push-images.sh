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
# It also pushes the Redis image the VMs run (REDIS_IMAGE, default redis:7; pulled first when
# this machine lacks it) as <REGISTRY>/<its name:tag>, for VMs that reach no public registry,
# and prints the REDIS_IMAGE line for compose/.env; PUSH_REDIS=0 skips it.
# A registry without TLS is the engine's business: Docker's "insecure-registries" (daemon.json),
# podman's registries.conf (`insecure = true`; CONTAINERS_REGISTRIES_CONF names another file);
# a push refused with "server gave HTTP response to HTTPS client" prints how.
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

# one push, and when it fails the reason in one line: how to allow a registry without TLS
push() {
  local out host=${REGISTRY%%/*}
  if out=$($ENGINE push "$1" 2>&1); then echo "  pushed $1"; return 0; fi
  echo "$out" >&2
  case "$out" in
    *"HTTP response to HTTPS client"*|*"http: server gave HTTP response"*)
      echo "push-images: $host serves plain HTTP, not TLS; allow it for this engine: docker: add \"insecure-registries\": [\"$host\"] to /etc/docker/daemon.json and restart Docker; podman: a [[registry]] location=\"$host\" insecure=true entry in /etc/containers/registries.conf (or CONTAINERS_REGISTRIES_CONF) -- then make push again" >&2 ;;
    *) echo "push-images: pushing $1 failed (logged in? '$ENGINE login $host')" >&2 ;;
  esac
  exit 1
}

t0=$(date +%s)
for role in $ROLES; do
  src="${PREFIX}rqp-$role:$VERSION"
  $ENGINE image inspect "$src" >/dev/null 2>&1 || { echo "push-images: no image $src; run 'make images' first" >&2; exit 2; }
  for tag in "$VERSION" latest; do
    dst="$REGISTRY/rqp-$role:$tag"
    $ENGINE tag "$src" "$dst"
    push "$dst"
  done
done
redis_line=""
if [ "${PUSH_REDIS:-1}" != 0 ]; then
  REDIS_IMAGE=${REDIS_IMAGE:-redis:7}
  if ! $ENGINE image inspect "$REDIS_IMAGE" >/dev/null 2>&1; then
    out=$($ENGINE pull "$REDIS_IMAGE" 2>&1) || { echo "$out" >&2; echo "push-images: no image $REDIS_IMAGE here and pulling it failed: set REDIS_IMAGE to a Redis image this machine has (e.g. localhost/pyredis-base:bookworm), or PUSH_REDIS=0" >&2; exit 1; }
  fi
  name=${REDIS_IMAGE##*/}
  case "$name" in *:*) ;; *) name="$name:latest" ;; esac
  $ENGINE tag "$REDIS_IMAGE" "$REGISTRY/$name"
  push "$REGISTRY/$name"
  redis_line="$REGISTRY/$name"
fi
echo "push-images: done in $(( $(date +%s) - t0 ))s. On every VM, in compose/.env:"
echo "  RQP_IMAGE_PREFIX=$REGISTRY/"
echo "  RQP_VERSION=$VERSION"
[ -z "$redis_line" ] || echo "  REDIS_IMAGE=$redis_line"
