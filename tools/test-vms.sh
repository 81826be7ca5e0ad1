#!/usr/bin/env bash
# test-vms.sh -- `make test-vms`: rqp's per-VM Compose files on simulated hosts, for real.
#
# Every "VM" is a network namespace of its own with its own container engine (a podman service
# started inside the namespace, with its own image store, networks and DNS), joined to a virtual
# LAN (a Linux bridge) by a veth pair, like a NIC on a switch. A VM's Compose project gets its own
# network inside its namespace; it reaches the other VMs only at their LAN addresses, through
# ports they publish there -- as between real VMs, where traffic enters a VM through its NIC.
# (Two Compose networks on one engine would not do: the engine isolates them from each other,
# published ports included.)
#
#   LAN 198.18.N.0/24 (a benchmarking range, on this machine only)
#     .1   this machine: the registry (Debian's docker-registry), Azurite (a container), the submitter
#     .10  scheduler VM    compose/scheduler-vm.yml: Redis (TLS, a user per role) published on .10
#     .11  processor VM 1  compose/processor-vm.yml (--profile metrics)
#     .12  processor VM 2  compose/processor-vm.yml, started mid-run
#
# The images are pushed with `make push` to the registry, and each VM's engine starts with an
# empty image store, so every stack pulls. The blob store and the status queues are Azure Blob
# and Azure Queue Storage on Azurite (azure-blob://, azure-queue://, the connection string a
# secret file). Then a 36,000-record workload, submitted from this machine with the public KEK,
# a signing key and the submitter's Redis user only, and while it runs: processor VM 2 joins and
# takes chunks; a processor with another blob store is named in the workload's blind list and
# costs nothing; processor VM 1 is cut off from the LAN for 20 s and recovers by itself; processor
# VM 2 is killed whole (SIGKILL, every container) and its chunks are re-run after their lease;
# VM 2 comes back, as a Spot VM, and is evicted: a fake instance metadata service on this machine
# (tests/scheduled_events.py on the LAN address, never the link-local one) announces Preempt for
# it, its processors drain (what cannot finish is handed back at once), acknowledge, and the VM is
# then killed, as Azure deletes it. Checked: every record done exactly once with the right result,
# no attempt spent by the eviction (the records VM 2 held keep attempt 1; the summary counts them
# as requeued after preemption), every VM's metrics recorded, the web console on the
# scheduler VM's loopback (login, CSRF, the workload's counts, the fleet, every VM's metrics read
# from Azure blobs: tools/check_console.py), `down -v` leaves nothing on any VM; printed: a
# timeline of the faults and of when the fleet healed (the eviction: notice -> drained ->
# acknowledged -> VM gone -> done).
#
#   tools/test-vms.sh                         # root; podman, docker CLI + compose plugin, ip, nsenter
#   RQP_TEST_VMS_RECORDS=36000 RQP_TEST_VMS_RECORD_SECONDS=0.01 tools/test-vms.sh
#   RQP_TEST_VMS_NOTICE_SECONDS=6 tools/test-vms.sh   # the Preempt notice (Azure gives 30 s; see below)
#   RQP_TEST_SKIP_BUILD=1 tools/test-vms.sh   # the images exist already
#   RQP_TEST_KEEP=1 tools/test-vms.sh         # leave everything up afterwards, for a look
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[ "$(id -u)" = 0 ] || { echo "test-vms: needs root (network namespaces, a podman service per VM)" >&2; exit 2; }
for tool in ip nsenter podman docker python3; do
  command -v "$tool" >/dev/null || { echo "test-vms: $tool is needed" >&2; exit 2; }
done
if ! command -v docker-registry >/dev/null; then  # Debian's CNCF distribution registry
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
fi
# shellcheck source=docker/engine.sh
. docker/engine.sh   # BASE_IMAGE; the docker CLI on podman's socket when there is no Docker daemon
docker compose version >/dev/null 2>&1 || { echo "test-vms: the docker compose CLI plugin is needed" >&2; exit 2; }
[ -x .tools/node_modules/.bin/azurite ] || bash tools/install-azurite.sh >/dev/null
NODE=$(readlink -f "$(command -v node)")

N=${RQP_TEST_VMS_RECORDS:-36000}
SLEEP=${RQP_TEST_VMS_RECORD_SECONDS:-0.01}
PARTITION=${RQP_TEST_VMS_PARTITION_SECONDS:-20}
LEASE=10
# The eviction's notice: NotBefore this many seconds after it is announced. Azure gives a Spot VM
# 30 s; the stub allows less, and a shorter one is used so that the drain must hand chunks back
# (RQP_DRAIN_MARGIN_SECONDS, 5 by default, comes off it: the drain deadline is 0-1 s after the
# notice, and a chunk VM 2 started just before it cannot be finished by then). With 30 s every
# chunk would simply finish and the hand-back path would go untested.
NOTICE=${RQP_TEST_VMS_NOTICE_SECONDS:-6}
# every chunk at least this many records (2 s at 0.01 s each), so a chunk in hand at the notice
# outlasts the drain deadline
CHUNK_MIN=${RQP_TEST_VMS_CHUNK_MIN:-200}
IMDS_PORT=8080   # the fake metadata service, on this machine's LAN address
DEADLINE=${RQP_TEST_VMS_DEADLINE:-420}
VERSION=${RQP_VERSION:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' shared/pyproject.toml | head -1)}
if [ -z "${REDIS_IMAGE:-}" ]; then
  if [ "$BASE_IMAGE" = localhost/pyredis-base:bookworm ]; then REDIS_IMAGE=$BASE_IMAGE; else REDIS_IMAGE=redis:7; fi
fi
for v in $(compgen -e); do
  case "$v" in RQP_TEST_*|RQP_VERSION|REDIS_IMAGE) ;; RQP_*|CONSOLE_PORT|COMPOSE_*|ROLES_ENV_FILE) unset "$v" ;; esac
done

ID=$(printf '%x' $(( $$ % 65536 )))
NET=$(( $$ % 200 + 20 ))
LAN=198.18.$NET
HOSTIP=$LAN.1
REG=$HOSTIP:5000
PREFIX=$REG/rqp
BR=rvb$ID
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/rqp-test-vms.XXXXXX")
chmod 0755 "$WORK"
RUN=/run/rqp-test-vms-$ID
VM_ENGINE_ENV="CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf"   # the VM engines pull from the test registry
VMS=(scheduler proc1 proc2)
declare -A VM_IP=([scheduler]=$LAN.10 [proc1]=$LAN.11 [proc2]=$LAN.12)
declare -A VM_PID=()
AZURITE=rqp-test-vms-$ID-azurite
REG_PID=""
IMDS_PID=""
passed=0
failed=0          # fail's count (teardown reports failure from the exit code)
T0=$(date +%s.%N)
TW=""             # when the workload was submitted: the timeline's zero
declare -a TIMELINE=()

# shellcheck source=tools/lib.sh
. tools/lib.sh   # now, since, ok, fail, run_once, copy_secrets
# shellcheck source=tools/lib-vms.sh
. tools/lib-vms.sh   # mark, field, vm_sock, vmd, add_vm, start_engine, kill_vm, cleanup_vm
mark_at() {  # mark_at EPOCH TEXT: a line of the timeline at a time something else recorded
  local at; at=$(python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.1f}')" "$1" "${TW:-$T0}")
  shift
  TIMELINE+=("$(printf '%7ss  %s' "+$at" "$*")")
  echo "    [timeline +${at}s] $*"
}

# ------------------------------------------------------------------------------ per-VM helpers
vmc() {  # the VM's Compose project: vmc VM compose-args...
  local vm=$1; shift
  local file=processor-vm.yml profile=(--profile metrics)
  [ "$vm" = scheduler ] && { file=scheduler-vm.yml; profile=(); }
  DOCKER_HOST=unix://$(vm_sock "$vm") docker compose -p "rqp-vms-$ID-$vm" -f "$ROOT/compose/$file" \
    --env-file "$WORK/$vm.env" "${profile[@]}" "$@"
}
project_of() { echo "rqp-vms-$ID-$1"; }

nic() { echo "rv$ID$1"; }   # the VM's NIC, seen from the LAN (at most 15 characters)
ns() { echo "rqpvm-$ID-$1"; }   # the VM's network namespace

teardown() {
  local code=$?
  set +e
  trap - ERR
  if [ "$code" != 0 ]; then
    # (the failure and the last state it saw were printed above, by fail)
    if [ -S "$(vm_sock scheduler)" ]; then
      echo "---- diagnostics: the scheduler's reclaims (chunks re-queued, leases run out, hand-backs)" >&2
      vmc scheduler logs --no-color --timestamps scheduler 2>&1 | grep -E "re-queued|reclaim|lease|handed back" | tail -40 >&2
    fi
    if [ -s "$WORK/imds.log" ]; then
      echo "---- diagnostics: the fake metadata service (announced, acknowledged)" >&2
      cat "$WORK/imds.log" >&2
    fi
    for vm in "${VMS[@]}"; do
      [ -S "$(vm_sock "$vm")" ] || continue
      echo "---- diagnostics: VM $vm" >&2
      vmc "$vm" ps -a >&2 2>&1
      vmc "$vm" logs --no-color --tail 30 >&2 2>&1
    done
  fi
  if [ "${RQP_TEST_KEEP:-0}" = 1 ]; then
    echo "test-vms: left up (RQP_TEST_KEEP=1): DOCKER_HOST=unix://$RUN/<vm>.sock docker compose -p rqp-vms-$ID-<vm> ...; work dir $WORK"
  else
    for vm in proc2 proc1 scheduler; do
      [ -S "$(vm_sock "$vm")" ] && vmc "$vm" down -v -t 5 --remove-orphans >/dev/null 2>&1
      cleanup_vm "$vm"
    done
    podman rm -f -t 2 "$AZURITE" >/dev/null 2>&1
    [ -z "$IMDS_PID" ] || { exec 7>&- 2>/dev/null; kill "$IMDS_PID" 2>/dev/null; wait "$IMDS_PID" 2>/dev/null; }
    [ -z "$REG_PID" ] || { kill "$REG_PID" 2>/dev/null; wait "$REG_PID" 2>/dev/null; }
    ip link del "$BR" 2>/dev/null
    for role in scheduler processor metrics-logger console redis; do
      podman rmi -f "$PREFIX/rqp-$role:$VERSION" "$PREFIX/rqp-$role:latest" >/dev/null 2>&1
    done
    rm -rf "$WORK" "$RUN"
  fi
  echo "test-vms: took $(since "$T0")s"
  echo "test-vms: $passed passed, $([ "$code" = 0 ] && echo 0 || echo 1) failed"
  exit "$code"
}
trap teardown EXIT
trap 'echo "not ok - line $LINENO: \"$BASH_COMMAND\" exited $?" >&2' ERR

# Redis as the scheduler VM's scheduler sees it (its own user, password file and CA): the
# workload's progress, the chunks reclaimed, each RQ worker's finished jobs, the blind processors.
STATE_PY='
import json, sys
from rq.utils import utcparse
from rqp.config import Settings
from rqp.connect import connect_redis
from rqp.ledger import JobId, Ledger
from rqp.status import read_progress
r = connect_redis(Settings.load(), check=False)
w = sys.argv[1]
p = read_progress(r, w)
out = {"state": None, "done": 0, "failed": 0}
if p is not None:
    out.update(state=p.state, done=p.done, failed=p.failed, total=p.total)
out["reclaimed"] = int(r.hget(f"rqp:w:{w}:meta", "reclaimed") or 0)
workers, busy, held, held_info = {}, [], {}, {}
for key in r.smembers("rq:workers:rqp"):
    key = key.decode()
    count, st = r.hmget(key, "successful_job_count", "state")
    name = key.split(":", 2)[-1]
    workers[name] = int(count or 0)
    if st == b"busy":
        busy.append(name)
# the chunks workers hold under a lease that has not run out: rqp:held:<host>:<pid> (set by
# START, cleared by COMMIT; RQ 3 keeps no current_job in its worker hash), for each RQ worker
# rqp-<host>-<pid>-s<start token>, named rqp-<host>-<pid>
for worker in workers:
    parts = worker[len("rqp-"):].rsplit("-", 2)
    if len(parts) != 3:
        continue
    host, pid = parts[0], parts[1]
    job = r.get(f"rqp:held:{host}:{pid}")
    lease = r.zscore(f"rqp:w:{w}:pending", job) if job else None
    if lease is None or lease == float("inf"):
        continue
    name = f"rqp-{host}-{pid}"
    held[name] = job.decode()
    # when it started (epoch s), and its records (first, last): the eviction picks a chunk just
    # started, and checks afterwards what its records spent
    try:
        started = utcparse(r.hget(b"rq:job:" + job, "started_at").decode()).timestamp()
    except (AttributeError, ValueError):
        started = None
    try:
        ids = sorted(Ledger(r, w).chunk_records(JobId.parse(job.decode()).chunk))
    except ValueError:
        ids = []
    held_info[name] = [job.decode(), started, ids[0] if ids else None, ids[-1] if ids else None]
out["workers"], out["busy"], out["held"], out["held_info"] = workers, busy, held, held_info
out["blind"] = {k.decode(): json.loads(v) for k, v in r.hgetall(f"rqp:w:{w}:blind").items()}
print(json.dumps(out))
'
state() { vmc scheduler exec -T scheduler python -c "$STATE_PY" "${W:-none}" 2>/dev/null; }
hostnames() {  # the container host names of a VM's processors (RQ worker names carry them)
  for id in $(vmd "$1" ps -q --filter "label=com.docker.compose.service=processor"); do
    vmd "$1" inspect -f '{{.Config.Hostname}}' "$id"
  done
}
progressed() {  # progressed BEFORE AFTER HOSTS: a worker of HOSTS finished more jobs (new workers too)
  python3 -c '
import json, sys
a, b, hosts = json.loads(sys.argv[1])["workers"], json.loads(sys.argv[2])["workers"], sys.argv[3].split()
mine = lambda name: any(name.startswith(f"rqp-{h}-") for h in hosts)
sys.exit(0 if any(mine(k) and n > a.get(k, 0) for k, n in b.items()) else 1)' "$1" "$2" "$3"
}
jobs_of() {  # jobs_of STATE_JSON VM: chunks the VM's processors finished (sum over its RQ workers)
  python3 -c '
import json, sys
d, hosts = json.loads(sys.argv[1]), set(sys.argv[2].split())
print(sum(n for name, n in d["workers"].items() if any(name.startswith(f"rqp-{h}-") for h in hosts)))' "$1" "$2"
}
wait_for() {  # wait_for SECONDS DESCRIPTION PYTHON_CONDITION_ON_STATE [VM...]: poll until true
  local secs=$1 what=$2 cond=$3 end st
  end=$(( $(date +%s) + secs ))
  while :; do
    st=$(state || true)
    if [ -n "$st" ] && python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if eval(sys.argv[2], {}, d) else 1)' "$st" "$cond" 2>/dev/null; then
      LAST_STATE=$st
      return 0
    fi
    [ "$(date +%s)" -lt "$end" ] || fail "$what: not within ${secs}s (last state: ${st:-none})"
    sleep 0.5
  done
}
one_off() {  # one_off VM NAME ARGS...: `compose run --no-deps` with a trustworthy exit code
  local vm=$1 name="rqp-vms-$ID-$2"; shift 2
  run_once "vmd $vm" "$name" vmc "$vm" run --no-deps --name "$name" "$@"
}

echo "test-vms: LAN $LAN.0/24, registry $REG, images $PREFIX/rqp-*:$VERSION, redis from $REDIS_IMAGE, $N records"

# ------------------------------------------------------------------------------ 1. images, registry
t=$(now)
if [ "${RQP_TEST_SKIP_BUILD:-0}" != 1 ]; then
  RQP_VERSION=$VERSION bash docker/build-images.sh >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; fail "make images"; }
fi
ip link add "$BR" type bridge
ip addr add "$HOSTIP/24" dev "$BR"
ip link set "$BR" up
mkdir -p "$WORK/registry"
cat > "$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $WORK/registry
  delete:
    enabled: true
http:
  addr: $REG
EOF
# the test registry speaks plain HTTP on the test LAN; the engines are told so (a real one: TLS)
cat > "$WORK/registries.conf" <<EOF
[[registry]]
location = "$REG"
insecure = true
EOF
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
end=$(( $(date +%s) + 20 ))
until python3 -c 'import sys, urllib.request; urllib.request.urlopen(f"http://{sys.argv[1]}/v2/", timeout=2)' "$REG" 2>/dev/null; do
  [ "$(date +%s)" -lt "$end" ] || { cat "$WORK/registry.log" >&2; fail "docker-registry did not answer on $REG"; }
  sleep 0.1
done
# PUSH_REDIS=0: Redis goes up below under its own name (rqp-redis), from the offline base image
CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf make -s push REGISTRY="$PREFIX" ENGINE=podman RQP_VERSION="$VERSION" PUSH_REDIS=0 >"$WORK/push.log" 2>&1 \
  || { cat "$WORK/push.log" >&2; fail "make push REGISTRY=$PREFIX"; }
grep -q "RQP_IMAGE_PREFIX=$PREFIX/" "$WORK/push.log" || { cat "$WORK/push.log" >&2; fail "make push did not say which RQP_IMAGE_PREFIX to use"; }
podman tag "$REDIS_IMAGE" "$PREFIX/rqp-redis:$VERSION"
CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf podman push -q "$PREFIX/rqp-redis:$VERSION" >/dev/null
# nothing local may serve the stacks: the pushed names go (the VMs' engines have empty stores anyway)
for role in scheduler processor metrics-logger console redis; do
  podman rmi "$PREFIX/rqp-$role:$VERSION" "$PREFIX/rqp-$role:latest" >/dev/null 2>&1 || true
done
tags=$(python3 -c '
import json, sys, urllib.request
reg, names = sys.argv[1], sys.argv[2:]
for n in names:
    t = json.load(urllib.request.urlopen(f"http://{reg}/v2/rqp/{n}/tags/list", timeout=5))["tags"]
    print(n, " ".join(sorted(t)))' "$REG" rqp-scheduler rqp-processor rqp-metrics-logger rqp-console)
echo "$tags" | sed 's/^/    registry: /'
[ "$(grep -c " $VERSION latest\$\| latest $VERSION\$" <<<"$tags")" = 4 ] || fail "the registry does not hold every role image as $VERSION and latest"
ok "make push REGISTRY=$PREFIX: 4 role images in the registry as $VERSION and latest (+ Redis); the local copies of those names removed"
echo "    [timing] images + registry + push: $(since "$t")s"

# ------------------------------------------------------------------------------ 2. hosts, Azurite, secrets
t=$(now)
mkdir -p "$RUN"
for vm in "${VMS[@]}"; do add_vm "$vm"; done
for vm in "${VMS[@]}"; do start_engine "$vm"; done
for vm in "${VMS[@]}"; do
  [ -z "$(vmd "$vm" images -q)" ] || fail "the engine of VM $vm has images before anything was pulled"
done
# Azurite (blob + queue) as a container on this machine, published on its LAN address
podman run -d --name "$AZURITE" --network podman -p "$HOSTIP:10000:10000" -p "$HOSTIP:10001:10001" \
  -v "$NODE:/usr/local/bin/node:ro" -v "$ROOT/.tools/node_modules:/opt/azurite/node_modules:ro" \
  --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges --user 10001:10001 -e HOME=/tmp \
  "$BASE_IMAGE" node /opt/azurite/node_modules/azurite/dist/src/azurite.js --blobHost 0.0.0.0 --queueHost 0.0.0.0 \
  --inMemoryPersistence --loose --silent --skipApiVersionCheck --disableTelemetry >/dev/null
DEV_KEY=$(sed -n 's/^DEV_KEY = "\(.*\)"$/\1/p' tests/azurite.py)
[ -n "$DEV_KEY" ] || fail "Azurite's development key not found in tests/azurite.py"
CONN="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$DEV_KEY;BlobEndpoint=http://$HOSTIP:10000/devstoreaccount1;QueueEndpoint=http://$HOSTIP:10001/devstoreaccount1;"
end=$(( $(date +%s) + 30 ))
until python3 -c 'import socket, sys; socket.create_connection((sys.argv[1], 10000), timeout=1).close(); socket.create_connection((sys.argv[1], 10001), timeout=1).close()' "$HOSTIP" 2>/dev/null; do
  [ "$(date +%s)" -lt "$end" ] || { podman logs "$AZURITE" >&2; fail "Azurite did not open its ports on $HOSTIP"; }
  sleep 0.2
done
# the fake instance metadata service for processor VM 2 (tests/scheduled_events.py): Scheduled
# Events and compute.name/priority on this machine's LAN address; commanded on fd 7 (announce,
# clear), it logs what it announced and every acknowledgement (StartRequests) to imds.log
mkfifo "$WORK/imds.in"
python3 tests/scheduled_events.py --host "$HOSTIP" --port "$IMDS_PORT" --name processor-vm-2 --priority Spot \
  <"$WORK/imds.in" >"$WORK/imds.log" 2>&1 &
IMDS_PID=$!
exec 7>"$WORK/imds.in"
end=$(( $(date +%s) + 15 ))
until grep -q '^serving ' "$WORK/imds.log"; do
  [ "$(date +%s)" -lt "$end" ] || { cat "$WORK/imds.log" >&2; fail "the fake metadata service did not start on $HOSTIP:$IMDS_PORT"; }
  sleep 0.1
done
IMDS_URL=$(sed -n 's/^serving //p' "$WORK/imds.log")
# the secrets: made once on "the operator's machine", then each VM gets only its own files with
# the copy procedure compose/README.md documents (tar keeps owners and modes; here without ssh)
RQP_VERSION=$VERSION ENGINE=podman bash compose/init-secrets.sh --host "${VM_IP[scheduler]}" "$WORK/secrets" >/dev/null
printf '%s' "$CONN" > "$WORK/secrets/azure_conn.new"
chown 10001:10001 "$WORK/secrets/azure_conn.new"; chmod 0400 "$WORK/secrets/azure_conn.new"
mv -f "$WORK/secrets/azure_conn.new" "$WORK/secrets/azure_conn"
SCHED_FILES=(kek.pem trusted_signers.pem azure_conn console_password trusted_operators.pem console_operator.pem redis_ca.pem redis_server.pem redis_server.key redis_users.acl redis_scheduler_password redis_metrics_password redis_console_password redis_console_actions_password)
PROC_FILES=(kek.pem trusted_signers.pem azure_conn redis_ca.pem redis_processor_password redis_metrics_password)
copy_secrets "$WORK/vm/scheduler/secrets" "${SCHED_FILES[@]}"
copy_secrets "$WORK/vm/proc1/secrets" "${PROC_FILES[@]}"
copy_secrets "$WORK/vm/proc2/secrets" "${PROC_FILES[@]}"
[ "$(stat -c '%u %a' "$WORK/vm/proc1/secrets/kek.pem")" = "10001 400" ] || fail "the copy procedure lost the KEK's owner or mode"
[ "$(stat -c '%u %a' "$WORK/vm/scheduler/secrets/redis_server.key")" = "10002 400" ] || fail "the copy procedure lost Redis's key owner or mode"

BLOB_URL="azure-blob://devstoreaccount1/rqp?connection_string_file=/run/secrets/azure_conn"
QUEUE_URL="azure-queue://devstoreaccount1?connection_string_file=/run/secrets/azure_conn"
cat > "$WORK/scheduler.env" <<EOF
RQP_SECRETS_DIR=$WORK/vm/scheduler/secrets
ROLES_ENV_FILE=$WORK/scheduler.env
RQP_IMAGE_PREFIX=$PREFIX/
RQP_VERSION=$VERSION
REDIS_IMAGE=$PREFIX/rqp-redis:$VERSION
REDIS_BIND=${VM_IP[scheduler]}
REDIS_PORT=6379
RQP_BLOB_URL=$BLOB_URL
RQP_QUEUE_URL=$QUEUE_URL
RQP_LEASE_SECONDS=$LEASE
RQP_METRICS_INTERVAL=5
RQP_METRICS_HOST_NAME=scheduler-vm
CONSOLE_PORT=9180
RQP_STATUS_TTL_DAYS=2
RQP_CHUNK_MIN=$CHUNK_MIN
EOF
for i in 1 2; do
  cat > "$WORK/proc$i.env" <<EOF
RQP_SECRETS_DIR=$WORK/vm/proc$i/secrets
ROLES_ENV_FILE=$WORK/proc$i.env
RQP_IMAGE_PREFIX=$PREFIX/
RQP_VERSION=$VERSION
RQP_SCHEDULER_HOST=${VM_IP[scheduler]}
REDIS_PORT=6379
RQP_BLOB_URL=$BLOB_URL
RQP_QUEUE_URL=$QUEUE_URL
RQP_LEASE_SECONDS=$LEASE
RQP_WORKERS=2
RQP_PROCESSOR_GRACE=10
RQP_STOP_GRACE_PERIOD=15s
RQP_METRICS_INTERVAL=5
RQP_METRICS_HOST_NAME=processor-vm-$i
EOF
done
# processor VM 2 is a Spot VM that Azure evicts: its processors watch the fake metadata service
# (on this machine's LAN address, as a VM reaches the real one at the link-local address) for a
# Scheduled Event naming it
cat >> "$WORK/proc2.env" <<EOF
RQP_SCHEDULED_EVENTS_URL=$IMDS_URL
RQP_VM_NAME=processor-vm-2
RQP_VM_PRIORITY=spot
EOF
ok "3 VMs (own network namespace, engine and empty image store each) on LAN $LAN.0/24; Azurite at $HOSTIP; secrets copied per VM with owners and modes kept"
echo "    [timing] hosts + Azurite + secrets: $(since "$t")s"

# ------------------------------------------------------------------------------ 3. the scheduler VM
t=$(now)
# the blob container, once, from the scheduler VM (run --no-deps: no other service is touched)
one_off scheduler mkcontainer scheduler python -c \
  "import os; from rqp.connect import open_blob_store; open_blob_store(os.environ['RQP_BLOB_URL']).create_container()" \
  >"$WORK/mkcontainer.log" 2>&1 || { cat "$WORK/mkcontainer.log" >&2; fail "creating the blob container from the scheduler VM"; }
vmc scheduler up -d >"$WORK/up-scheduler.log" 2>&1 || { cat "$WORK/up-scheduler.log" >&2; fail "scheduler-vm.yml up"; }
redis_id=$(vmc scheduler ps -q redis)
wait_for 120 "the scheduler VM's Redis answering the scheduler" 'True'
published=$(vmd scheduler port "$redis_id")
[ "$published" = "6379/tcp -> ${VM_IP[scheduler]}:6379" ] || fail "Redis is published as '$published', not only on REDIS_BIND ${VM_IP[scheduler]}:6379"
published=$(vmd scheduler port "$(vmc scheduler ps -q console)")
[ "$published" = "9180/tcp -> 127.0.0.1:9180" ] || fail "the console is published as '$published', not only on the scheduler VM's 127.0.0.1:9180"
[ "$(vmc scheduler exec -T scheduler printenv RQP_STATUS_TTL_DAYS)" = 2 ] || fail "a setting of the .env file (RQP_STATUS_TTL_DAYS) did not reach the scheduler"
# a one-off command beside the running stack (what an operator does) must leave Redis alone
one_off scheduler list scheduler rqp list >"$WORK/list.log" 2>&1 || { cat "$WORK/list.log" >&2; fail "compose run --no-deps scheduler rqp list"; }
ok "scheduler VM up from pulled images (Redis, scheduler, metrics logger, console); Redis published only on ${VM_IP[scheduler]}:6379; RQP_STATUS_TTL_DAYS from .env reached the scheduler"
echo "    [timing] scheduler VM: pull + up: $(since "$t")s"

t=$(now)
vmc proc1 up -d --scale processor=1 >"$WORK/up-proc1.log" 2>&1 || { cat "$WORK/up-proc1.log" >&2; fail "processor-vm.yml up on VM 1"; }
wait_for 90 "processor VM 1's 2 workers registered" 'len(workers) >= 2'
ok "processor VM 1 up (pulled), its 2 workers reached the scheduler VM's Redis at ${VM_IP[scheduler]}:6379 over TLS as user processor"
echo "    [timing] processor VM 1: pull + up: $(since "$t")s"

# ------------------------------------------------------------------------------ 4. the workload
W="vms-$(python3 -c 'import secrets; print(secrets.token_hex(3))')"
write_workload_inputs "$WORK/in" "$N" "$SLEEP"
# the submitter: a machine on the LAN with the public KEK, its signing key, Redis's CA, the
# submitter's Redis password and the storage connection string -- nothing else
SUB=$WORK/submitter
install -d -o 10001 -g 10001 -m 0700 "$SUB"   # the submitter's own folder (the container runs as uid 10001)
for f in kek.pub.pem signer.pem redis_ca.pem redis_submitter_password azure_conn; do cp -p "$WORK/secrets/$f" "$SUB/"; done
podman run --rm --name "rqp-vms-$ID-submitter" --network podman --read-only --tmpfs /tmp --cap-drop ALL \
  --security-opt no-new-privileges -v "$WORK/in:/in:ro" -v "$SUB:/run/secrets:ro" \
  -e "RQP_REDIS_URL=rediss://submitter@${VM_IP[scheduler]}:6379/0" -e RQP_REDIS_PASSWORD_FILE=/run/secrets/redis_submitter_password \
  -e RQP_REDIS_CA_FILE=/run/secrets/redis_ca.pem -e RQP_KEK_PUBLIC_FILE=/run/secrets/kek.pub.pem \
  -e RQP_SIGNING_KEY_FILE=/run/secrets/signer.pem -e "RQP_BLOB_URL=$BLOB_URL" \
  "rqp-scheduler:$VERSION" rqp pack /in/data.jsonl /in/process.py --id "$W" --submit >"$WORK/pack.log" 2>&1 \
  || { cat "$WORK/pack.log" >&2; fail "pack and submit from the submitter's machine"; }
grep -q "(submitted)" "$WORK/pack.log" || { cat "$WORK/pack.log" >&2; fail "rqp pack did not submit"; }
TW=$(now)
mark "workload $W ($N records) submitted from $HOSTIP as Redis user submitter; processor VM 1 alone"
wait_for 60 "the scheduler started $W" 'state == "running" and done > 0'
ok "submitted from another machine with the public KEK, a signing key, the CA and the submitter's password only; VM 1 is processing"

# -- fault 1: a second processor VM joins mid-run
d0=$(field "$LAST_STATE" done)
mark "FAULT 1 begins: processor VM 2 starts (pulls its images) at $d0 records done"
vmc proc2 up -d --scale processor=1 >"$WORK/up-proc2.log" 2>&1 || { cat "$WORK/up-proc2.log" >&2; fail "processor-vm.yml up on VM 2"; }
H2=$(hostnames proc2)
end=$(( $(date +%s) + 90 ))
while :; do
  st=$(state || true)
  if [ -n "$st" ] && [ "$(jobs_of "$st" "$H2")" -gt 0 ]; then break; fi
  [ "$(date +%s)" -lt "$end" ] || fail "processor VM 2 finished no chunk within 90s of starting"
  sleep 0.5
done
mark "HEALED 1: processor VM 2 committed its first chunks ($(jobs_of "$st" "$H2")), $(field "$st" done) records done"
ok "a second processor VM started mid-run pulled its image, joined and took chunks"

# -- a processor whose blob store is not the scheduler's: named, never fatal
ELSEWHERE="azure-blob://devstoreaccount1/elsewhere?connection_string_file=/run/secrets/azure_conn"
one_off proc2 mkelsewhere -e "RQP_BLOB_URL=$ELSEWHERE" --entrypoint /opt/rqp/role-bin/python processor -c \
  "import os; from rqp.connect import open_blob_store; open_blob_store(os.environ['RQP_BLOB_URL']).create_container()" \
  >"$WORK/mkelsewhere.log" 2>&1 || { cat "$WORK/mkelsewhere.log" >&2; fail "creating another blob container"; }
vmc proc2 run -d --no-deps --name "rqp-vms-$ID-blind" -e "RQP_BLOB_URL=$ELSEWHERE" -e RQP_WORKERS=1 processor >/dev/null \
  || fail "starting a processor with another blob store"
end=$(( $(date +%s) + 60 ))
blind=""
while :; do
  st=$(state || true)
  [ -z "$st" ] || blind=$(python3 -c 'import json,sys; print("\n".join(k + ": " + v["reason"] for k, v in json.loads(sys.argv[1])["blind"].items()))' "$st")
  [ -z "$blind" ] || break
  [ "$(date +%s)" -lt "$end" ] || fail "a processor with another blob store was not recorded in rqp:w:$W:blind"
  sleep 0.5
done
vmd proc2 rm -f "rqp-vms-$ID-blind" >/dev/null
echo "    blind: $blind"
grep -q "elsewhere" <<<"$blind" || fail "the blind processor's reason does not name its blob store: $blind"
ok "a processor VM with another blob store hands its chunks back and is named with its store in rqp:w:$W:blind"

# -- fault 2: processor VM 1 cut off from the LAN (Redis and storage) for PARTITION seconds
H1=$(hostnames proc1)
p1_started=$(vmd proc1 inspect -f '{{.State.StartedAt}} {{.RestartCount}}' $(vmc proc1 ps -q processor))
st=$(state)
before_cut=$st
mark "FAULT 2 begins: processor VM 1's link is cut (no Redis, no storage) at $(field "$st" done) records done"
ip link set "$(nic proc1)" down
end=$(( $(date +%s) + PARTITION ))
while [ "$(date +%s)" -lt "$end" ]; do st=$(state || true); sleep 1; done
ip link set "$(nic proc1)" up
mark "processor VM 1 reconnected after ${PARTITION}s; meanwhile VM 2 did $(( $(field "$st" done) - $(field "$before_cut" done) )) records and the scheduler re-ran $(( $(field "$st" reclaimed) - $(field "$before_cut" reclaimed) )) chunks VM 1 held"
end=$(( $(date +%s) + 120 ))
while :; do
  st=$(state || true)
  if [ -n "$st" ] && progressed "$before_cut" "$st" "$H1"; then break; fi
  if [ -n "$st" ] && [ "$(field "$st" state)" = done ]; then fail "the workload finished before processor VM 1 worked again"; fi
  [ "$(date +%s)" -lt "$end" ] || fail "processor VM 1 did not work again within 120s of being reconnected"
  sleep 0.5
done
mark "HEALED 2: processor VM 1 commits chunks again, $(field "$st" done) records done"
[ "$(vmd proc1 inspect -f '{{.State.StartedAt}} {{.RestartCount}}' $(vmc proc1 ps -q processor))" = "$p1_started" ] \
  || fail "processor VM 1's container was restarted; it should have recovered by itself"
ok "processor VM 1, cut off for ${PARTITION}s, works again by itself once reconnected (container not restarted)"

# -- fault 3: processor VM 2 killed whole mid-run
# Killed while it holds a chunk under a live lease, or the fault tests nothing: between two chunks
# (or while the queue is momentarily empty) a VM holds none, and a state read a second earlier
# says nothing of the moment of the kill. So VM 2 is frozen (cgroup freezer), its holdings read
# from Redis while nothing on it can move, and it is SIGKILLed frozen -- or thawed to try again.
[ "$(field "$st" state)" = running ] || fail "the workload is $(field "$st" state) already: too short for the last fault (raise RQP_TEST_VMS_RECORDS)"
ids=$(vmd proc2 ps -q --filter "label=com.docker.compose.project=$(project_of proc2)")
end=$(( $(date +%s) + 30 ))
while :; do
  # shellcheck disable=SC2086
  vmd proc2 pause $ids >/dev/null
  st=$(state || echo '{"held": {}}')
  held=$(python3 -c 'import json,sys; h=json.loads(sys.argv[1]).get("held", {}); print(" ".join(j for n, j in sorted(h.items()) if any(n.startswith(f"rqp-{x}-") for x in sys.argv[2].split())))' "$st" "$H2")
  [ -z "$held" ] || break
  # shellcheck disable=SC2086
  vmd proc2 unpause $ids >/dev/null
  [ "$(date +%s)" -lt "$end" ] || fail "processor VM 2 held no chunk under a lease within 30s (last state: $st)"
  sleep 0.3
done
r0=$(field "$st" reclaimed)
mark "FAULT 3 begins: every container of processor VM 2 SIGKILLed while it holds $held, $(field "$st" done) records done"
# shellcheck disable=SC2086
vmd proc2 kill -s KILL $ids >/dev/null
wait_for 90 "processor VM 2's chunks reclaimed" "reclaimed > $r0"
mark "HEALED 3: the scheduler re-ran $(( $(field "$LAST_STATE" reclaimed) - r0 )) chunk(s) of processor VM 2, $(field "$LAST_STATE" done) records done"
ok "processor VM 2, SIGKILLed whole while it held $held, had its chunks re-run after their lease"

# -- fault 4: processor VM 2 comes back as a Spot VM and is evicted (Azure Scheduled Events)
# Its processors watch the fake metadata service. The notice comes while VM 2 holds a chunk it
# started under a second ago (frozen, read, announced, thawed: the freeze-then-check of fault 3),
# so the drain, due 0-1 s after the notice (NOTICE less RQP_DRAIN_MARGIN_SECONDS), must hand it
# back. Once the processors acknowledge (StartRequests), the VM is killed as Azure deletes it.
vmc proc2 up -d --scale processor=1 >"$WORK/up-proc2-again.log" 2>&1 || { cat "$WORK/up-proc2-again.log" >&2; fail "processor-vm.yml up on VM 2 again"; }
H2=$(hostnames proc2)
mark "processor VM 2 is back, as a Spot VM watching the metadata service at $HOSTIP:$IMDS_PORT"
ids=$(vmd proc2 ps -q --filter "label=com.docker.compose.project=$(project_of proc2)")
end=$(( $(date +%s) + 60 ))
while :; do
  # shellcheck disable=SC2086
  vmd proc2 pause $ids >/dev/null
  frozen=$(now)
  st=$(state || echo '{"held_info": {}}')
  # VM 2's chunks in hand: "job first last" a line, when one of them had started under a second
  # before VM 2 was frozen
  fresh=$(python3 -c '
import json, sys
info, hosts, frozen = json.loads(sys.argv[1]).get("held_info", {}), sys.argv[2].split(), float(sys.argv[3])
mine = {n: v for n, v in info.items() if any(n.startswith(f"rqp-{h}-") for h in hosts)}
if any(v[1] is not None and frozen - v[1] < 1.0 for v in mine.values()):
    print("\n".join(f"{v[0]} {v[2]} {v[3]}" for v in mine.values()))' "$st" "$H2" "$frozen")
  [ -z "$fresh" ] || break
  # shellcheck disable=SC2086
  vmd proc2 unpause $ids >/dev/null
  [ "$(field "$st" state)" = running ] || fail "the workload is $(field "$st" state) before the eviction (raise RQP_TEST_VMS_RECORDS)"
  [ "$(date +%s)" -lt "$end" ] || fail "processor VM 2 started no chunk just before a look within 60s of coming back (last state: $st)"
  sleep 0.2
done
echo "$fresh" > "$WORK/evicted-chunks"
echo "announce Preempt $NOTICE processor-vm-2" >&7
end=$(( $(date +%s) + 10 ))
until grep -q '^announced ' "$WORK/imds.log"; do
  [ "$(date +%s)" -lt "$end" ] || { cat "$WORK/imds.log" >&2; fail "the fake metadata service did not announce the eviction"; }
  sleep 0.05
done
read -r _ EID T_NOTICE < <(grep '^announced ' "$WORK/imds.log" | head -1)
# shellcheck disable=SC2086
vmd proc2 unpause $ids >/dev/null
mark_at "$T_NOTICE" "FAULT 4 begins: Preempt notice $EID for processor VM 2 (NotBefore +${NOTICE}s) while it holds $(cut -d' ' -f1 "$WORK/evicted-chunks" | tr '\n' ' ')at $(field "$st" done) records done"
end=$(( $(date +%s) + NOTICE + 20 ))
until grep -q "^acknowledged $EID " "$WORK/imds.log"; do
  [ "$(date +%s)" -lt "$end" ] || fail "processor VM 2 did not acknowledge eviction $EID within $((NOTICE + 20))s of the notice"
  sleep 0.1
done
# acknowledged: the platform goes ahead at once -- every container of VM 2 SIGKILLed. (A processor
# exits by itself once it has acknowledged, and its restart policy may start it again meanwhile:
# whatever runs is killed until nothing has run for a second.)
# shellcheck disable=SC2086
vmd proc2 kill -s KILL $ids >/dev/null 2>&1 || true
T_GONE=$(now)
end=$(( $(date +%s) + 15 ))
quiet=0
while [ "$quiet" -lt 2 ]; do
  running=$(vmd proc2 ps -q)
  if [ -z "$running" ]; then quiet=$((quiet + 1)); else quiet=0; T_GONE=""; fi
  # shellcheck disable=SC2086
  [ -z "$running" ] || vmd proc2 kill -s KILL $running >/dev/null 2>&1 || true
  [ -n "${T_GONE:-}" ] || T_GONE=$(now)
  [ "$(date +%s)" -lt "$end" ] || fail "processor VM 2 still runs containers 15s after it was killed: $running"
  sleep 0.5
done
echo clear >&7   # the VM is deleted: the event is over
read -r _ _ T_ACK < <(grep "^acknowledged $EID " "$WORK/imds.log" | head -1)
# what each processor of VM 2 said, with the time it said it: the notice seen, the drain, the ack
vmc proc2 logs --no-color --timestamps processor >"$WORK/proc2-eviction.log" 2>&1 || true
grep -E "eviction notice|drained in|handed back|acknowledged eviction" "$WORK/proc2-eviction.log" | sed 's/^/    VM 2: /'
# drained: when the last worker the drain stopped was handed back (its log line's own time, to the
# millisecond); with none stopped, the drain ended before the acknowledgement
T_DRAINED=$(python3 -c '
import datetime, re, sys
last = None
for line in open(sys.argv[1]):
    m = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) rqp-processor WARNING worker pid \d+ (could not finish|did not stop)", line)
    if m:
        at = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc)
        last = at.timestamp() + int(m.group(2)) / 1000
print(last if last is not None else "")' "$WORK/proc2-eviction.log")
grep -q "rqp-processor: drained in" "$WORK/proc2-eviction.log" \
  || fail "processor VM 2 never said it drained (rqp-processor: drained in ...); its log: $(tail -20 "$WORK/proc2-eviction.log")"
[ -n "$T_DRAINED" ] || T_DRAINED=$T_ACK   # its log time unreadable: it drained before it acknowledged
handed=$(grep -c "handed back for another processor (no attempt spent)" "$WORK/proc2-eviction.log" || true)
mark_at "$T_DRAINED" "processor VM 2 drained: $(grep -o 'drained in .*handed back)' "$WORK/proc2-eviction.log" | head -1)"
mark_at "$T_ACK" "processor VM 2 acknowledged $EID (StartRequests), $(python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$T_NOTICE" "$T_ACK")s after the notice"
mark_at "$T_GONE" "processor VM 2 gone: every container SIGKILLed, as Azure deletes an evicted Spot VM"
python3 -c 'import sys; sys.exit(0 if float(sys.argv[2]) <= float(sys.argv[1]) + float(sys.argv[3]) else 1)' "$T_NOTICE" "$T_ACK" "$NOTICE" \
  || fail "processor VM 2 acknowledged the eviction after its NotBefore (+${NOTICE}s)"
[ "${handed:-0}" -ge 1 ] || fail "processor VM 2 handed no chunk back on the eviction (it held $(tr '\n' ' ' < "$WORK/evicted-chunks"))"
ok "processor VM 2 (Spot), told of its eviction, drained within the notice, handed back $handed chunk(s) at once and acknowledged; then killed"
# a Spot scale set replaces an evicted VM: VM 2 comes back (its event is over) and helps finish
vmc proc2 up -d --scale processor=1 >"$WORK/up-proc2-replaced.log" 2>&1 || { cat "$WORK/up-proc2-replaced.log" >&2; fail "processor-vm.yml up on VM 2's replacement"; }
mark "processor VM 2's replacement joins (a Spot scale set replaces an evicted VM; no event names it)"

wait_for "$DEADLINE" "workload $W done" 'state in ("done", "failed", "finished") or failed > 0'
mark "workload $W: state $(field "$LAST_STATE" state), $(field "$LAST_STATE" done) done, $(field "$LAST_STATE" failed) failed"
[ "$(field "$LAST_STATE" state)" = done ] && [ "$(field "$LAST_STATE" failed)" = 0 ] && [ "$(field "$LAST_STATE" done)" = "$N" ] \
  || fail "workload $W ended $LAST_STATE"
ok "the workload ended done: $N records done, 0 failed, after a join, a partition, a VM killed and a VM evicted"

# ------------------------------------------------------------------------------ 5. exactly once
vmc scheduler exec -T scheduler rqp results "$W" > "$WORK/results.jsonl" || fail "rqp results $W"
python3 tools/check_results_once.py "$WORK/results.jsonl" "$N" || fail "the results are not every record exactly once"
ok "every one of the $N results is present once and correct (0 lost, 0 duplicated)"
rerun=$(vmc scheduler exec -T scheduler rqp status "$W" --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["done"], d["failed"], d["state"])')
[ "$rerun" = "$N 0 done" ] || fail "rqp status $W says: $rerun"
# the eviction spent no attempt: the summary (sealed, as `rqp status` shows an ended workload)
# counts the records handed back as requeued after preemption, and every record of the chunks VM 2
# held at the notice ran done on its first attempt
vmc scheduler exec -T scheduler rqp status "$W" --json > "$WORK/status.json" 2>&1 || fail "rqp status $W --json: $(cat "$WORK/status.json")"
preempted=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["verified"] is True, d; print(d["preempted"])' "$WORK/status.json") \
  || fail "rqp status $W does not vouch for its sealed summary: $(cat "$WORK/status.json")"
[ "$preempted" -gt 0 ] || fail "the summary of $W counts no record requeued after preemption: $(cat "$WORK/status.json")"
kept=""
while read -r job first last; do
  [ "$first" != None ] || continue
  for rid in $(python3 -c 'import sys; a, b = int(sys.argv[1]), int(sys.argv[2]); print(*sorted({a, (a + b) // 2, b}))' "$first" "$last"); do
    rec=$(vmc scheduler exec -T scheduler rqp status "$W" --record "$rid" 2>&1 </dev/null) || fail "rqp status $W --record $rid: $rec"
    got=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["state"], d["attempts"], d.get("reruns"))' "$rec")
    [ "${got% *}" = "done 1" ] || fail "record $rid (of $job, which processor VM 2 held at the eviction) is '$got' (state attempts reruns): the eviction spent an attempt"
    kept+="$rid "
  done
done < "$WORK/evicted-chunks"
[ -n "$kept" ] || fail "no record of the chunks processor VM 2 held at the eviction was checked ($(cat "$WORK/evicted-chunks"))"
mark "the summary: $preempted record(s) requeued after preemption; records $kept(held by VM 2 at the notice) done on attempt 1"
ok "no attempt spent by the eviction: the sealed summary counts $preempted record(s) requeued after preemption, and records ${kept}of the chunks VM 2 held ran once, attempt 1"

# ------------------------------------------------------------------------------ 6. every VM's metrics
end=$(( $(date +%s) + 60 ))
METRICS_PY='
import os
from rqp.connect import open_blob_store
vms = {name.split("/")[2] for name in open_blob_store(os.environ["RQP_BLOB_URL"]).list("metrics/")}
print(" ".join(sorted(vms)))
'
while :; do
  vms=$(vmc scheduler exec -T metrics-logger /opt/rqp/bin/python -c "$METRICS_PY" 2>/dev/null || true)
  case " $vms " in *" scheduler-vm "*" processor-vm-1 "*|*" processor-vm-1 "*" scheduler-vm "*) [[ " $vms " == *" processor-vm-2 "* ]] && break ;; esac
  [ "$(date +%s)" -lt "$end" ] || fail "metrics recorded for [$vms], not for scheduler-vm, processor-vm-1 and processor-vm-2"
  sleep 1
done
vmc scheduler exec -T metrics-logger rqp-metrics-logger report --since 1h --no-html > "$WORK/report.txt" 2>&1 || fail "rqp-metrics-logger report on the scheduler VM: $(cat "$WORK/report.txt")"
for vm in scheduler-vm processor-vm-1 processor-vm-2; do grep -q "$vm" "$WORK/report.txt" || { cat "$WORK/report.txt" >&2; fail "the scheduler VM's metrics report does not show $vm"; }; done
ok "the metrics report on the scheduler VM shows every VM: $vms"
# the web console, as an operator reaches it (ssh -L 9180:127.0.0.1:9180 scheduler-vm): from the
# scheduler VM's own loopback; from the LAN its port is closed
t=$(now)
nsenter --net="/run/netns/rqpvm-$ID-scheduler" python3 tools/check_console.py --url http://127.0.0.1:9180 \
  --password-file "$WORK/vm/scheduler/secrets/console_password" --workload "$W" --records "$N" --hosts $H1 \
  --workers 2 --vms scheduler-vm processor-vm-1 processor-vm-2 || fail "the web console on the scheduler VM"
python3 -c 'import socket, sys; socket.create_connection((sys.argv[1], 9180), timeout=2)' "${VM_IP[scheduler]}" 2>/dev/null \
  && fail "the console answers on the scheduler VM's LAN address ${VM_IP[scheduler]}:9180"
ok "the console on the scheduler VM (its loopback only; read-only Redis user, Azure blobs): login required, CSRF enforced, $W with its $N records, processor VM 1's processors and workers, every VM's metrics"
echo "    [timing] console checks: $(since "$t")s"

# ------------------------------------------------------------------------------ 7. pulled, quiet, down
for vm in "${VMS[@]}"; do
  imgs=$(vmd "$vm" images --format '{{.Repository}}:{{.Tag}}' | sort | tr '\n' ' ')
  echo "    VM $vm pulled: $imgs"
  case "$imgs" in *"$PREFIX/"*) ;; *) fail "VM $vm holds no image from the registry" ;; esac
done
pulls=$(grep -c 'GET /v2/rqp/rqp-[a-z-]*/manifests/' "$WORK/registry.log" || true)
[ "${pulls:-0}" -ge 6 ] || fail "the registry served $pulls manifest requests; every stack should have pulled"
[ "$(vmc scheduler ps -q redis)" = "$redis_id" ] || fail "Redis was recreated during the run (compose run without --no-deps?)"
noise=$( { vmc proc1 logs --no-color; vmc scheduler logs --no-color; } 2>&1 | grep -c "Request URL\|Response status" || true)
[ "${noise:-0}" = 0 ] || fail "the Azure SDK logged $noise HTTP requests/responses at INFO"
ok "every VM pulled its images from the registry ($pulls manifest requests); Redis never recreated; no Azure SDK HTTP noise in the logs"

t=$(now)
for vm in proc2 proc1 scheduler; do
  vmc "$vm" down -v -t 15 --remove-orphans >"$WORK/down-$vm.log" 2>&1 || { cat "$WORK/down-$vm.log" >&2; fail "down -v on VM $vm"; }
  left=$(vmd "$vm" ps -aq; vmd "$vm" volume ls -q; vmd "$vm" network ls --format '{{.Name}}' | grep -vxE 'podman|bridge' || true)   # the engine's own default network stays
  [ -z "$left" ] || fail "down -v left on VM $vm: $left"
done
ok "down -v on every VM's stack left no container, volume or network behind"
echo "    [timing] down: $(since "$t")s"

echo
echo "test-vms: timeline (seconds since the workload was submitted)"
printf '%s\n' "${TIMELINE[@]}"
