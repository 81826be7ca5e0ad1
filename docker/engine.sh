# shellcheck shell=bash
# Sourced by docker/build-images.sh and tools/test-images.sh: pick the container engine.
#
#   ENGINE=docker (default)  the docker CLI; when no Docker daemon answers but podman is
#                            installed, podman's Docker-compatible socket is started and used
#                            (../shared/containers/podman-socket.sh, as on CI machines)
#   ENGINE=podman            the podman CLI for builds; `docker compose` (or podman-compose)
#                            talks to podman's socket
# Exports: ENGINE, DOCKER_HOST (when podman serves the API), COMPOSE (the compose command).

ENGINE=${ENGINE:-docker}
_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PODMAN_SOCKET_SH=${PODMAN_SOCKET_SH:-$_repo/../shared/containers/podman-socket.sh}

_podman_socket() {
  # podman's Docker API: the docker CLI and `docker compose` then work unchanged
  if [ -x "$PODMAN_SOCKET_SH" ] || [ -f "$PODMAN_SOCKET_SH" ]; then
    # a PID file from a service that has since died names a number another process may now
    # have, and the script would take the service for running: drop it unless it is podman's
    local pidf=${PODMAN_SOCK_PIDFILE:-/run/podman/service.pid}
    if [ -f "$pidf" ] && ! grep -qa podman "/proc/$(cat "$pidf")/cmdline" 2>/dev/null; then
      rm -f "$pidf"
    fi
    eval "$(bash "$PODMAN_SOCKET_SH" start)"
  else
    local sock=/run/podman/podman.sock
    # a socket file left by a service that has since died answers nothing: start one again
    if [ ! -S "$sock" ] || ! DOCKER_HOST=unix://$sock docker version >/dev/null 2>&1; then
      rm -f "$sock"
      mkdir -p /run/podman
      nohup podman system service --time=0 "unix://$sock" >/var/tmp/podman-service.log 2>&1 &
      for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
    fi
    export DOCKER_HOST=unix://$sock DOCKER_BUILDKIT=0 COMPOSE_BAKE=false
  fi
}

case "$ENGINE" in
  docker)
    command -v docker >/dev/null || { echo "no docker CLI; install Docker, or use ENGINE=podman" >&2; exit 2; }
    if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
      if command -v podman >/dev/null; then
        _podman_socket
      else
        echo "the docker CLI reaches no Docker daemon (DOCKER_HOST=${DOCKER_HOST:-unset}); start Docker or use ENGINE=podman" >&2
        exit 2
      fi
    fi
    ;;
  podman)
    command -v podman >/dev/null || { echo "ENGINE=podman but podman is not installed" >&2; exit 2; }
    _podman_socket
    ;;
  *) echo "ENGINE must be docker or podman, got '$ENGINE'" >&2; exit 2 ;;
esac
export ENGINE

if docker compose version >/dev/null 2>&1; then
  COMPOSE="docker compose"
elif command -v podman-compose >/dev/null; then
  COMPOSE="podman-compose"
else
  COMPOSE=""
fi
export COMPOSE

# The base image: BASE_IMAGE if set; else the offline Debian base when this machine has it
# (CI: ../shared/containers/setup-containers.sh builds it; no registry is reachable there);
# else the public python:3.11-slim.
if [ -z "${BASE_IMAGE:-}" ]; then
  if $ENGINE image inspect localhost/pyredis-base:bookworm >/dev/null 2>&1; then
    BASE_IMAGE=localhost/pyredis-base:bookworm
  else
    BASE_IMAGE=python:3.11-slim
  fi
fi
export BASE_IMAGE
