#!/usr/bin/env bash
# Install the Azurite storage emulator (pinned) into <repo>/.tools for the Azure backend tests.
#
# Idempotent: does nothing when the pinned version is already installed. Pinned to 3.35.0 because
# azurite 3.36+ needs Node >= 22 and the project's machines run Node 20. npm uses whatever
# registry its own configuration names; none is written here.
set -euo pipefail

AZURITE_VERSION="${AZURITE_VERSION:-3.35.0}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${REPO_ROOT}/.tools"
PKG_JSON="${TOOLS_DIR}/node_modules/azurite/package.json"
BIN="${TOOLS_DIR}/node_modules/.bin/azurite"

installed_version() {
    [ -f "${PKG_JSON}" ] || return 0
    node -e 'process.stdout.write(require(process.argv[1]).version)' "${PKG_JSON}"
}

if [ -x "${BIN}" ] && [ "$(installed_version)" = "${AZURITE_VERSION}" ]; then
    echo "azurite ${AZURITE_VERSION} already installed in ${TOOLS_DIR}"
    exit 0
fi

command -v npm >/dev/null || { echo "npm not found: install Node.js 20 and npm first" >&2; exit 1; }
mkdir -p "${TOOLS_DIR}"
npm install --prefix "${TOOLS_DIR}" --no-audit --no-fund "azurite@${AZURITE_VERSION}"
[ "$(installed_version)" = "${AZURITE_VERSION}" ] || { echo "azurite ${AZURITE_VERSION} did not install into ${TOOLS_DIR}" >&2; exit 1; }
echo "azurite ${AZURITE_VERSION} installed: ${BIN}"
