#!/usr/bin/env bash
# Make sure the console's browser tests (tests/console, tests/console/browser.py) find a headless
# Chromium and its WebDriver: Debian's chromium and chromium-driver, from apt. Nothing downloads
# a browser from anywhere else.
#
# Idempotent: does nothing when both are on PATH. Otherwise installs them with apt-get -- as
# root directly, or through sudo (non-interactive: a sudo that asks for a password fails with a
# line saying what to run). Without apt-get it says what to install and fails.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
browser() { have chromium || have chromium-browser; }

if browser && have chromedriver; then
    echo "chromium and chromedriver already on PATH: $(command -v chromium || command -v chromium-browser), $(command -v chromedriver)"
    exit 0
fi

if ! have apt-get; then
    echo "install-chromium: the console's browser tests need chromium and chromedriver on PATH, and there is no apt-get here: install Chromium and its matching ChromeDriver" >&2
    exit 1
fi

if [ "$(id -u)" = 0 ]; then
    as_root=()
elif have sudo; then
    as_root=(sudo -n)
else
    echo "install-chromium: not root and no sudo: run 'apt-get install -y chromium chromium-driver' as root, then make test again" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-chromium: installing Debian's chromium and chromium-driver with apt-get"
if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null \
    || ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -yq --no-install-recommends chromium chromium-driver >/dev/null; then
    echo "install-chromium: apt-get could not install chromium chromium-driver (a sudo password? run 'sudo apt-get install -y chromium chromium-driver' yourself, then make test again)" >&2
    exit 1
fi
if ! browser || ! have chromedriver; then
    echo "install-chromium: installed, but chromium or chromedriver is still not on PATH" >&2
    exit 1
fi
echo "install-chromium: $(command -v chromium || command -v chromium-browser) and $(command -v chromedriver) installed"
