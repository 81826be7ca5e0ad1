#!/usr/bin/env bash
# build-images.sh -- `make images`: the rqp images, one per role, from the wheelhouse.
#
#   docker/build-images.sh                       # rqp-scheduler, rqp-processor, rqp-metrics-logger, rqp-console
#   ENGINE=podman docker/build-images.sh
#   BASE_IMAGE=python:3.11-slim RQP_IMAGE_PREFIX=myregistry.azurecr.io/ docker/build-images.sh
#   ROLES="processor" docker/build-images.sh
#
# Each image is tagged <prefix>rqp-<role>:<version> (the version of shared/pyproject.toml) and
# <prefix>rqp-<role>:latest. Needs wheels/ (`make wheels`); needs no network itself.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=docker/engine.sh
. docker/engine.sh

VERSION=${RQP_VERSION:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' shared/pyproject.toml | head -1)}
PREFIX=${RQP_IMAGE_PREFIX:-}
ROLES=${ROLES:-scheduler processor metrics-logger console}
ls wheels/rqp-"$VERSION"-*.whl >/dev/null 2>&1 || { echo "build-images: no wheels/rqp-$VERSION-*.whl; run 'make wheels' first" >&2; exit 2; }

image_id() { local id; id=$($ENGINE image inspect -f '{{.Id}}' "$1" 2>/dev/null) || true; echo "${id#sha256:}"; }
size_mb() { $ENGINE image inspect -f '{{.Size}}' "$1" 2>/dev/null | awk '{printf "%.0f MB", $1 / 1e6}'; }

t0=$(date +%s)
iid=$(mktemp)
trap 'rm -f "$iid"' EXIT
echo "build-images: $ENGINE, base $BASE_IMAGE, version $VERSION, roles: $ROLES"
for role in $ROLES; do
  t=$(date +%s)
  image="${PREFIX}rqp-$role"
  log=$($ENGINE build -f docker/Dockerfile --target "$role" --build-arg "BASE_IMAGE=$BASE_IMAGE" --iidfile "$iid" \
    --label "org.opencontainers.image.version=$VERSION" -t "$image:$VERSION" -t "$image:latest" . 2>&1) \
    || { echo "$log" >&2; echo "build-images: building $image failed" >&2; exit 1; }
  built=$(cat "$iid"); built=${built#sha256:}
  # podman keeps localhost/NAME and docker.io/library/NAME apart and resolves a short name to
  # localhost/ first: make sure the short names Compose uses resolve to what was just built.
  for tag in "$VERSION" latest; do
    if [ "$(image_id "$image:$tag")" != "$built" ] && [ -z "$PREFIX" ]; then
      $ENGINE tag "$built" "localhost/$image:$tag"
    fi
    [ "$(image_id "$image:$tag")" = "$built" ] || { echo "build-images: $image:$tag does not resolve to the new image" >&2; exit 1; }
  done
  echo "  $image:$VERSION (+ :latest) built in $(( $(date +%s) - t ))s: $(size_mb "$image:$VERSION")"
done
# superseded builds of these images (untagged now) would pile up build after build
$ENGINE image prune -f --filter label=rqp.role >/dev/null 2>&1 || true
echo "build-images: done in $(( $(date +%s) - t0 ))s; the roles share one base layer: $BASE_IMAGE ($(size_mb "$BASE_IMAGE")) + the rqp venv"
