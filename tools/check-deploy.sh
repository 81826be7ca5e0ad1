#!/usr/bin/env bash
# check-deploy.sh -- `make check-deploy`: the deployment files, checked the way their own tools
# read them (what tests/compose/ checks besides is how they fit the Compose files):
#   * compose/cloud-init/*.yaml with `cloud-init schema --config-file` (Debian's cloud-init)
#   * compose/azure/azuredeploy.json with checkov (pinned, in its own virtualenv .tools/checkov-venv);
#     a finding fails the run; a check skipped in the template says why in its metadata
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOV_VERSION=3.2.533
CHECKOV_VENV=${CHECKOV_VENV:-.tools/checkov-venv}

command -v cloud-init >/dev/null || { echo "check-deploy: cloud-init is needed (apt-get install cloud-init)" >&2; exit 2; }
for f in compose/cloud-init/*.yaml; do
  cloud-init schema --config-file "$f" || { echo "check-deploy: $f is not valid cloud-config" >&2; exit 1; }
done

if [ "$("$CHECKOV_VENV/bin/checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
  rm -rf "$CHECKOV_VENV"
  python3 -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/python" -m pip install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION" >"$CHECKOV_VENV.log" 2>&1 \
    || { tail -20 "$CHECKOV_VENV.log" >&2; echo "check-deploy: installing checkov $CHECKOV_VERSION failed" >&2; exit 2; }
fi
out=$(LOG_LEVEL=ERROR "$CHECKOV_VENV/bin/checkov" -f compose/azure/azuredeploy.json --framework arm --compact --quiet 2>&1) \
  || { echo "$out" >&2; echo "check-deploy: checkov found problems in compose/azure/azuredeploy.json" >&2; exit 1; }
summary=$(grep -m1 "Passed checks" <<<"$out" || true)
case "$summary" in *"Passed checks: "[1-9]*"Failed checks: 0"*) ;; *) echo "$out" >&2; echo "check-deploy: checkov checked nothing" >&2; exit 1 ;; esac
echo "check-deploy: cloud-init schema: both files valid; checkov (ARM): $summary"
