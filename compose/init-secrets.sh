#!/usr/bin/env bash
# init-secrets.sh -- create the secret files the Compose files mount (once per deployment).
#
#   compose/init-secrets.sh [DIR]          # default DIR: $RQP_SECRETS_DIR or compose/secrets
#
# Writes, without overwriting anything that exists:
#   DIR/kek.pem             private key-encryption key (RSA-3072, `rqp keygen`): scheduler, processors
#   DIR/kek.pub.pem         its public half: enough to pack workloads (give it to whoever packs)
#   DIR/signer.pem          a submitter's Ed25519 signing key (`rqp keygen --signing`): whoever packs
#                           keeps it; it never goes to the VMs
#   DIR/signer.pub.pem      its public half
#   DIR/trusted_signers.pem the public keys whose workloads the scheduler and processors run (starts
#                           as signer.pub.pem; append more submitters' .pub.pem files to it)
#   DIR/redis_password      Redis password (64 hex characters)
#   DIR/dashboard_password  rq-dashboard basic-auth password (user: RQ_DASHBOARD_USERNAME, admin)
#   DIR/azure_conn          empty placeholder; put an Azure Storage connection string in it if
#                           RQP_BLOB_URL / RQP_QUEUE_URL name connection_string_file=/run/secrets/azure_conn
# The files are generated inside the rqp-scheduler image (no host Python needed), then owned by
# the containers' user (uid 10001) with mode 0400; the public keys are 0444. Copy DIR, without
# signer.pem, to every VM of a deployment (the processors need kek.pem, trusted_signers.pem and
# redis_password too), e.g. with scp.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
DIR=${1:-${RQP_SECRETS_DIR:-$here/secrets}}
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
IMAGE=${RQP_IMAGE_PREFIX:-}rqp-scheduler:${RQP_VERSION:-latest}
ENGINE=${ENGINE:-docker}
mkdir -p "$DIR"
chmod 0700 "$DIR" 2>/dev/null || true

$ENGINE run --rm --network none --user 0:0 --entrypoint /bin/sh -v "$DIR:/keys" "$IMAGE" -c '
  set -eu
  umask 077
  cd /keys
  made=""
  if [ ! -e kek.pem ]; then rqp keygen --out kek.pem --public-out kek.pub.pem >/dev/null; made="$made kek.pem kek.pub.pem"; fi
  if [ ! -e signer.pem ]; then rqp keygen --signing --out signer.pem --public-out signer.pub.pem >/dev/null; made="$made signer.pem signer.pub.pem"; fi
  if [ ! -e trusted_signers.pem ]; then { echo "# submitter made by init-secrets.sh"; cat signer.pub.pem; } > trusted_signers.pem; made="$made trusted_signers.pem"; fi
  for f in redis_password dashboard_password; do
    if [ ! -e "$f" ]; then python3 -c "import secrets; print(secrets.token_hex(32))" > "$f"; made="$made $f"; fi
  done
  if [ ! -e azure_conn ]; then : > azure_conn; made="$made azure_conn"; fi
  chown 10001:10001 kek.pem signer.pem redis_password dashboard_password azure_conn
  chmod 0400 kek.pem signer.pem redis_password dashboard_password azure_conn
  for f in kek.pub.pem signer.pub.pem trusted_signers.pem; do [ ! -e "$f" ] || chmod 0444 "$f"; done
  echo "secrets in '"$DIR"':${made:- (all existed; nothing changed)}"
'
# Check on the host too: some engines (podman's Docker API with `run --rm`) report exit code 0
# for a failed container.
for f in kek.pem kek.pub.pem signer.pem signer.pub.pem trusted_signers.pem redis_password dashboard_password azure_conn; do
  [ -e "$DIR/$f" ] || { echo "init-secrets: $DIR/$f was not created (see the errors above)" >&2; exit 1; }
done
