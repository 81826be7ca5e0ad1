#!/usr/bin/env bash
# init-secrets.sh -- create the secret files the Compose files mount (once per deployment).
#
#   compose/init-secrets.sh [--host NAME_OR_IP]... [--ha] [DIR]     # default DIR: $RQP_SECRETS_DIR or compose/secrets
#
# --host (repeatable, or comma-separated; default: $RQP_SCHEDULER_HOST): the scheduler VM's
# private address and/or DNS name, as the processor VMs' RQP_SCHEDULER_HOST names it. Redis's
# certificate is issued for these names plus `redis`, `localhost` and 127.0.0.1 (enough for
# all-in-one.yml on one machine). For the three-VM high-availability layout (compose/README.md,
# "Three VMs: a Redis replica, three Sentinels and a standby scheduler") name every VM a client
# may be sent to by Sentinel: --host vm1 --host vm2 --host vm3 (addresses and/or names).
#
# --ha: also the users of Redis replication and Sentinel (compose/ha.yml, compose/sentinel.yml):
#   DIR/redis_replica_password   the ACL user `replica` (+psync +replconf +ping) a replica logs in
#                           to its primary as (masterauth): both Redis servers (owner uid 10002)
#   DIR/redis_sentinel_password  the ACL user `sentinel` the Sentinels log in to the Redis servers
#                           and to each other as (auth-pass, sentinel-pass): every Sentinel (uid 10002)
#   DIR/sentinel_client_password the Sentinels' ACL user `client` every rqp role asks where the
#                           primary is as (RQP_REDIS_SENTINEL_PASSWORD_FILE): every role (uid 10001)
#   DIR/redis_ha_users.acl  the Redis servers' lines for `replica` and `sentinel` (SHA-256 hashes
#                           only), read beside redis_users.acl: both Redis servers (uid 10002)
#   DIR/sentinel_users.acl  the Sentinels' users: `default` off, `sentinel` (the peers), `client`
#                           (the SENTINEL queries that find the primary, nothing else): every Sentinel
#
# Writes, without overwriting anything that exists:
#   DIR/kek.pem             private key-encryption key (RSA-3072, `rqp keygen`): scheduler, processors
#   DIR/kek.pub.pem         its public half: enough to pack workloads (give it to whoever packs)
#   DIR/signer.pem          a submitter's Ed25519 signing key (`rqp keygen --signing`): whoever packs
#                           keeps it; it never goes to the VMs
#   DIR/signer.pub.pem      its public half
#   DIR/trusted_signers.pem the public keys whose workloads the scheduler and processors run (starts
#                           as signer.pub.pem; append more submitters' .pub.pem files to it)
#   DIR/operator.pem        the admins' operator key (`rqp keygen --operator`): signs pause, resume,
#                           cancel, retry, priority and delete typed at `rqp` (RQP_OPERATOR_KEY_FILE);
#                           whoever administers keeps it; it never goes to the VMs
#   DIR/operator.pub.pem    its public half
#   DIR/console_operator.pem     the web console's own operator key: it signs the console's actions
#                           on behalf of the logged-in person (RQP_CONSOLE_OPERATOR_KEY_FILE); the
#                           console only
#   DIR/console_operator.pub.pem its public half
#   DIR/trusted_operators.pem   the operators whose signed requests the roles obey
#                           (RQP_TRUSTED_OPERATORS_FILE: the scheduler, the console, the CLI); starts
#                           as operator.pub.pem + console_operator.pub.pem; append more .pub.pem files
#   DIR/redis_<role>_password   one Redis password per role (64 hex characters): scheduler,
#                           processor, metrics, submitter, console (read-only) and
#                           console_actions (`rqp redis-acl init`)
#   DIR/redis_users.acl     Redis's users: one per role with least privilege, the default user off,
#                           passwords only as SHA-256 hashes (`rqp redis-acl render` prints it)
#   DIR/redis_ca.pem        the CA certificate clients verify Redis with (every VM, every submitter)
#   DIR/redis_ca.key        the CA's private key: needed only to issue another server certificate.
#                           NOT needed on any VM: keep it here (or offline) and never copy it.
#   DIR/redis_server.pem    Redis's certificate (EC P-256, 825 days) and ...
#   DIR/redis_server.key    ... its private key: the scheduler VM's Redis only
#   DIR/console_password    the web console's login password (user admin; rqp-console)
#   DIR/azure_conn          empty placeholder; put an Azure Storage connection string in it if
#                           RQP_BLOB_URL / RQP_QUEUE_URL name connection_string_file=/run/secrets/azure_conn
# The files are generated inside the rqp-scheduler image (no host Python needed). Modes: private
# keys and passwords 0400, certificates and public keys 0444. Owners: the rqp containers' user
# (uid 10001) for what the roles read; Redis's user (uid 10002) for redis_server.key and
# redis_users.acl, so only the Redis container can read them; redis_ca.key stays root's.
# Needs the rqp-scheduler image on this machine (`make wheels images`; RQP_IMAGE_PREFIX and
# RQP_VERSION name another) and a container engine, found as `make images` finds it (ENGINE=docker,
# the default, or podman). Run it as root (or with sudo): the files it leaves belong to uid 10001
# and 10002, so whoever packs reads signer.pem with sudo or copies it (compose/README.md, step 3).
# What goes to which machine: compose/README.md ("Deploy on two (or more) VMs, step by step"). To replace a server
# certificate (new address, expiry), remove redis_server.pem and redis_server.key and run this
# again with --host; to replace a role's password, remove its file and redis_users.acl, run this
# again, then restart Redis and that role.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hosts=()
ha=0
DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --host) [ $# -ge 2 ] || { echo "init-secrets: --host needs a name or address" >&2; exit 2; }; hosts+=("$2"); shift 2 ;;
    --host=*) hosts+=("${1#--host=}"); shift ;;
    --ha) ha=1; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    -*) echo "init-secrets: unknown option $1 (usage: init-secrets.sh [--host NAME_OR_IP]... [--ha] [DIR])" >&2; exit 2 ;;
    *) [ -z "$DIR" ] || { echo "init-secrets: one DIR only" >&2; exit 2; }; DIR=$1; shift ;;
  esac
done
[ ${#hosts[@]} -gt 0 ] || [ -z "${RQP_SCHEDULER_HOST:-}" ] || hosts=("$RQP_SCHEDULER_HOST")
host_args=()
for h in "${hosts[@]}"; do host_args+=(--host "$h"); done
DIR=${DIR:-${RQP_SECRETS_DIR:-$here/secrets}}
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
IMAGE=${RQP_IMAGE_PREFIX:-}rqp-scheduler:${RQP_VERSION:-latest}
# the container engine, found as `make images` finds it (docker/engine.sh: ENGINE=docker|podman;
# docker without a daemon falls back to podman's socket); a copy of compose/ alone uses $ENGINE
if [ -f "$here/../docker/engine.sh" ]; then
  # shellcheck source=docker/engine.sh
  . "$here/../docker/engine.sh"
fi
ENGINE=${ENGINE:-docker}
$ENGINE image inspect "$IMAGE" >/dev/null 2>&1 || {
  echo "init-secrets: no image $IMAGE on this machine ($ENGINE): it makes the files inside it; run 'make wheels images' first (ENGINE=podman for podman), or pull it and set RQP_IMAGE_PREFIX/RQP_VERSION" >&2
  exit 2
}
mkdir -p "$DIR"
chmod 0700 "$DIR" 2>/dev/null || true

# shellcheck disable=SC2016  # $made etc. are the container shell's
$ENGINE run --rm --network none --user 0:0 --entrypoint /bin/sh -v "$DIR:/keys" -e "INIT_HA=$ha" "$IMAGE" -c '
  set -eu
  umask 077
  cd /keys
  made=""
  if [ ! -e kek.pem ]; then rqp keygen --out kek.pem --public-out kek.pub.pem >/dev/null; made="$made kek.pem kek.pub.pem"; fi
  if [ ! -e signer.pem ]; then rqp keygen --signing --out signer.pem --public-out signer.pub.pem >/dev/null; made="$made signer.pem signer.pub.pem"; fi
  if [ ! -e trusted_signers.pem ]; then { echo "# submitter made by init-secrets.sh"; cat signer.pub.pem; } > trusted_signers.pem; made="$made trusted_signers.pem"; fi
  if [ ! -e operator.pem ]; then rqp keygen --operator --out operator.pem --public-out operator.pub.pem >/dev/null; made="$made operator.pem operator.pub.pem"; fi
  if [ ! -e console_operator.pem ]; then rqp keygen --operator --out console_operator.pem --public-out console_operator.pub.pem >/dev/null; made="$made console_operator.pem console_operator.pub.pem"; fi
  if [ ! -e trusted_operators.pem ]; then { echo "# operators made by init-secrets.sh: the admins, then the console"; cat operator.pub.pem console_operator.pub.pem; } > trusted_operators.pem; made="$made trusted_operators.pem"; fi
  if [ ! -e console_password ]; then python3 -c "import secrets; print(secrets.token_hex(32))" > console_password; made="$made console_password"; fi
  if [ ! -e azure_conn ]; then : > azure_conn; made="$made azure_conn"; fi
  # Redis: a password per role, the CA and the server certificate, the ACL file (rqp.redis_acl)
  redis_made=$(rqp redis-acl init /keys "$@")
  made="$made${redis_made:+ $redis_made}"
  chown 10001:10001 kek.pem signer.pem operator.pem console_operator.pem console_password azure_conn redis_*_password
  chmod 0400 kek.pem signer.pem operator.pem console_operator.pem console_password azure_conn redis_*_password
  chown 10002:10002 redis_server.key redis_users.acl
  chmod 0400 redis_server.key redis_users.acl
  [ ! -e redis_ca.key ] || chmod 0400 redis_ca.key
  if [ "$INIT_HA" = 1 ]; then
    # replication and Sentinel users (compose/ha.yml, compose/sentinel.yml): a password each, and
    # the ACL lines with their SHA-256 hashes only
    for f in redis_replica_password redis_sentinel_password sentinel_client_password; do
      if [ ! -e "$f" ]; then python3 -c "import secrets; print(secrets.token_hex(32))" > "$f"; made="$made $f"; fi
    done
    hash() { python3 -c "import hashlib, sys; print(hashlib.sha256(open(sys.argv[1]).read().strip().encode()).hexdigest())" "$1"; }
    if [ ! -e redis_ha_users.acl ]; then
      {
        echo "user replica on #$(hash redis_replica_password) resetchannels -@all +psync +replconf +ping"
        echo "user sentinel on #$(hash redis_sentinel_password) allchannels -@all +multi +exec +slaveof +replicaof +ping +subscribe +publish +info +role +config|rewrite +client|setname +client|kill +script|kill"
      } > redis_ha_users.acl
      made="$made redis_ha_users.acl"
    fi
    if [ ! -e sentinel_users.acl ]; then
      {
        echo "user default off resetchannels -@all"
        echo "user sentinel on #$(hash redis_sentinel_password) allchannels +@all"
        echo "user client on #$(hash sentinel_client_password) resetchannels -@all +ping +hello +auth +sentinel|masters +sentinel|master +sentinel|slaves +sentinel|replicas +sentinel|sentinels +sentinel|get-master-addr-by-name"
      } > sentinel_users.acl
      made="$made sentinel_users.acl"
    fi
    chown 10002:10002 redis_replica_password redis_sentinel_password redis_ha_users.acl sentinel_users.acl
    chown 10001:10001 sentinel_client_password
    chmod 0400 redis_replica_password redis_sentinel_password redis_ha_users.acl sentinel_users.acl sentinel_client_password
  fi
  for f in kek.pub.pem signer.pub.pem operator.pub.pem console_operator.pub.pem trusted_signers.pem trusted_operators.pem redis_ca.pem redis_server.pem; do [ ! -e "$f" ] || chmod 0444 "$f"; done
  echo "secrets in '"$DIR"':${made:- (all existed; nothing changed)}"
  if [ -e redis_ca.key ]; then echo "redis_ca.key (the Redis CA private key) is needed on no VM: never copy it; keep it here or offline"; fi
' init-secrets "${host_args[@]}"
# Check on the host too: some engines (podman's Docker API with `run --rm`) report exit code 0
# for a failed container.
for f in kek.pem kek.pub.pem signer.pem signer.pub.pem trusted_signers.pem operator.pem operator.pub.pem \
         console_operator.pem console_operator.pub.pem trusted_operators.pem console_password azure_conn \
         redis_scheduler_password redis_processor_password redis_metrics_password redis_submitter_password \
         redis_console_password redis_console_actions_password redis_users.acl redis_ca.pem redis_server.pem \
         redis_server.key; do
  [ -e "$DIR/$f" ] || { echo "init-secrets: $DIR/$f was not created (see the errors above)" >&2; exit 1; }
done
if [ "$ha" = 1 ]; then
  for f in redis_replica_password redis_sentinel_password sentinel_client_password redis_ha_users.acl sentinel_users.acl; do
    [ -e "$DIR/$f" ] || { echo "init-secrets: $DIR/$f was not created (see the errors above)" >&2; exit 1; }
  done
fi
