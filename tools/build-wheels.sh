#!/usr/bin/env bash
# build-wheels.sh -- the wheelhouse the container images install from (`make wheels`).
#
# Builds wheels of the repository's own packages (shared -> rqp, scheduler, processor,
# metrics-logger, console) and of every dependency (the console's Flask and waitress among them),
# into wheels/. `docker build` then installs only from there (`pip install --no-index`): image
# builds are offline and reproducible, and this is the one step that needs PyPI.
#
# Use the same Python as the images' base (Debian bookworm's /usr/bin/python3, 3.11.2):
# environment markers such as `python_full_version < "3.11.3"` are decided by the interpreter
# that runs pip. With ARG BASE_IMAGE=python:3.11-slim (3.11.x, newer) build with a matching
# Python: PYTHON=/path/to/python3.11 tools/build-wheels.sh.
#
#   tools/build-wheels.sh                  # -> wheels/*.whl, wheels/requirements.lock, wheels/SHA256SUMS
#   PYTHON=python3.11 WHEELS=out tools/build-wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
WHEELS=${WHEELS:-wheels}
export PIP_DISABLE_PIP_VERSION_CHECK=1
# Reproducible wheels of our own packages (zip timestamps from the last commit, not the clock):
# unchanged sources give byte-identical wheels, so the image builds hit their layer cache.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 315532800)}
export SOURCE_DATE_EPOCH

"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"images run Python 3.11; {sys.executable} is {sys.version.split()[0]}"' \
  || { echo "build-wheels: need Python 3.11 (set PYTHON=)" >&2; exit 2; }
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  echo "build-wheels: $PYTHON has no pip; on Debian: apt-get install -y python3-pip python3-venv" >&2
  exit 2
fi
for pkg in shared scheduler processor metrics-logger console; do
  [ -f "$pkg/pyproject.toml" ] || { echo "build-wheels: $pkg/pyproject.toml missing" >&2; exit 2; }
done

t0=$(date +%s)
# A fresh wheelhouse each time: a stale wheel of an old rqp must not satisfy `rqp==0.1.0`.
rm -rf "$WHEELS"
mkdir -p "$WHEELS"
# Build the local packages out of tree (a copy), so no build/ or *.egg-info lands in the sources.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
for pkg in shared scheduler processor metrics-logger console; do
  mkdir -p "$src/$pkg"
  tar -C "$pkg" --exclude='*.egg-info' --exclude=__pycache__ --exclude=build --exclude=.mypy_cache -cf - . | tar -C "$src/$pkg" -xf -
done
"$PYTHON" -m pip wheel --quiet --wheel-dir "$WHEELS" \
  "$src/shared[azure]" "$src/scheduler" "$src/processor" "$src/metrics-logger" "$src/console"

# What was resolved, for the record and for review: name==version per wheel, and checksums.
(cd "$WHEELS" && ls -1 *.whl | sed -E 's/^([^-]+)-([^-]+)-.*/\1==\2/' | sort -f > requirements.lock && sha256sum *.whl > SHA256SUMS)
n=$(ls -1 "$WHEELS"/*.whl | wc -l)
size=$(du -sh "$WHEELS" | cut -f1)
echo "build-wheels: $n wheels ($size) in $WHEELS/ with $("$PYTHON" -V 2>&1) in $(( $(date +%s) - t0 ))s"
