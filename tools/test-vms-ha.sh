#!/usr/bin/env bash
# test-vms-ha.sh -- the high-availability half of `make test-vms` (issue 26 item 6): the three-VM
# layout of compose/sentinel.yml, compose/ha.yml and compose/ha-processor.yml on simulated hosts,
# for real, through the two faults a Redis primary's VM can suffer.
#
# Every "VM" is a network namespace with its own podman engine, image store and DNS, joined to a
# virtual LAN (a Linux bridge) by a veth pair, as in tools/test-vms.sh:
#
#   LAN 198.18.N.0/24 (a benchmarking range, on this machine only)
#     .1   this machine: the submitter and the observer (it asks the Sentinels, as a client would)
#     .10  vm1  Sentinel; Redis (the first primary) + rqp-scheduler serve     (scheduler-vm.yml + ha.yml)
#     .11  vm2  Sentinel; Redis (its replica) + rqp-scheduler serve (standby) (scheduler-vm.yml + ha.yml)
#     .12  vm3  Sentinel
#     and on each of them a processor with 2 workers                          (processor-vm.yml + ha-processor.yml)
#
# TLS on every link (clients, replication, Sentinels), a Redis user per role, the replication and
# Sentinel users of init-secrets.sh --ha, every role finding the primary through the Sentinels. The
# blob store is a directory shared by every VM (file:///data/blobs, as a file share mounted on each).
# One workload (RQP_TEST_VMS_RECORDS, 20,000, RQP_TEST_VMS_RECORD_SECONDS each) goes through:
#   a. vm1 (primary + leader) cut off from the LAN for RQP_TEST_VMS_PARTITION_SECONDS (20) while its
#      scheduler keeps writing to its Redis: the Sentinels of vm2 and vm3 promote vm2's replica,
#      vm2's standby takes the lease; reconnected, vm1's Redis is demoted by Sentinel (its writes of
#      the partition discarded) and its scheduler, fenced, exits 75 and comes back as the standby;
#   b. vm2 (now primary + leader) killed whole: its link cut, every container SIGKILLed, its engine
#      killed; vm1's and vm3's Sentinels promote vm1's Redis and vm1's scheduler takes over.
# Each fault prints its timeline (fault -> promoted -> leader taken over -> work resumed -> done)
# and the time from the fault to work resuming; the workload ends with every result exactly once
# and correct; teardown leaves no container, network, namespace or link.
#
#   tools/test-vms-ha.sh                         # root; podman, docker CLI + compose plugin, ip, nsenter
#   RQP_TEST_SKIP_BUILD=1 tools/test-vms-ha.sh   # the images exist already
#   RQP_TEST_KEEP=1 tools/test-vms-ha.sh         # leave everything up afterwards, for a look
# shellcheck disable=SC2015  # `[ a ] && [ b ] || fail ...`: fail when either test fails, as meant
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[ "$(id -u)" = 0 ] || { echo "test-vms-ha: needs root (network namespaces, a podman service per VM)" >&2; exit 2; }
for tool in ip nsenter podman docker python3; do
  command -v "$tool" >/dev/null || { echo "test-vms-ha: $tool is needed" >&2; exit 2; }
done
# shellcheck source=docker/engine.sh
. docker/engine.sh   # BASE_IMAGE; the docker CLI on podman's socket when there is no Docker daemon
docker compose version >/dev/null 2>&1 || { echo "test-vms-ha: the docker compose CLI plugin is needed" >&2; exit 2; }
PY=${RQP_TEST_PYTHON:-$ROOT/.venv/bin/python}   # the observer: rqp and redis-py, as any client
"$PY" -c 'import rqp, redis' 2>/dev/null || { echo "test-vms-ha: $PY cannot import rqp (make dev, or set RQP_TEST_PYTHON)" >&2; exit 2; }

N=${RQP_TEST_VMS_RECORDS:-20000}
SLEEP=${RQP_TEST_VMS_RECORD_SECONDS:-0.02}
PARTITION=${RQP_TEST_VMS_PARTITION_SECONDS:-20}
LEASE=10
DOWN_AFTER_MS=${RQP_TEST_VMS_DOWN_AFTER_MS:-3000}
FAILOVER_TIMEOUT_MS=${RQP_TEST_VMS_FAILOVER_TIMEOUT_MS:-5000}
DEADLINE=${RQP_TEST_VMS_DEADLINE:-300}
VERSION=${RQP_VERSION:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' shared/pyproject.toml | head -1)}
if [ -z "${REDIS_IMAGE:-}" ]; then
  if [ "$BASE_IMAGE" = localhost/pyredis-base:bookworm ]; then REDIS_IMAGE=$BASE_IMAGE; else REDIS_IMAGE=redis:7; fi
fi
for v in $(compgen -e); do
  case "$v" in RQP_TEST_*|RQP_VERSION|REDIS_IMAGE) ;; RQP_*|CONSOLE_PORT|COMPOSE_*|ROLES_ENV_FILE|REDIS_*|SENTINEL_*) unset "$v" ;; esac
done

ID=$(printf '%x' $(( $$ % 65536 )))
NET=$(( ($$ + 97) % 200 + 20 ))
LAN=198.18.$NET
HOSTIP=$LAN.1
BR=rhb$ID
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/rqp-test-vms-ha.XXXXXX")
chmod 0755 "$WORK"
RUN=/run/rqp-test-vms-ha-$ID
VMS=(vm1 vm2 vm3)
declare -A VM_IP=([vm1]=$LAN.10 [vm2]=$LAN.11 [vm3]=$LAN.12)
declare -A VM_PID=()
SENTINELS="${VM_IP[vm1]}:26379,${VM_IP[vm2]}:26379,${VM_IP[vm3]}:26379"
passed=0
failed=0
T0=$(date +%s.%N)
TW=""             # when the workload was submitted
declare -a TIMELINE=()

# shellcheck source=tools/lib.sh
. tools/lib.sh   # now, since, ok, fail, copy_secrets
# shellcheck source=tools/lib-vms.sh
. tools/lib-vms.sh   # mark, field, vm_sock, vmd, add_vm, start_engine, kill_vm, cleanup_vm
# ------------------------------------------------------------------------------ per-VM helpers
# the VM's Compose projects: sentinel (sentinel.yml), redis (scheduler-vm.yml + ha.yml), proc
# (processor-vm.yml + ha-processor.yml); one .env per VM, as on a real VM
vmc() {  # vmc VM PROJECT compose-args...
  local vm=$1 project=$2 files=(); shift 2
  case "$project" in
    sentinel) files=(-f "$ROOT/compose/sentinel.yml") ;;
    redis) files=(-f "$ROOT/compose/scheduler-vm.yml" -f "$ROOT/compose/ha.yml") ;;
    proc) files=(-f "$ROOT/compose/processor-vm.yml" -f "$ROOT/compose/ha-processor.yml") ;;
  esac
  DOCKER_HOST=unix://$(vm_sock "$vm") docker compose -p "rqp-ha-$ID-$vm-$project" "${files[@]}" --env-file "$WORK/$vm.env" "$@"
}
nic() { echo "rh$ID$1"; }   # the VM's NIC, seen from the LAN (at most 15 characters)
ns() { echo "rqpha-$ID-$1"; }

teardown() {
  local code=$?
  set +e
  trap - ERR
  [ -z "${WATCH_PID:-}" ] || kill "$WATCH_PID" 2>/dev/null
  if [ "$code" != 0 ]; then
    for vm in "${VMS[@]}"; do
      if [ ! -S "$(vm_sock "$vm")" ] || ! vmd "$vm" version >/dev/null 2>&1; then continue; fi
      echo "---- diagnostics: VM $vm" >&2
      vmd "$vm" ps -a >&2 2>&1
      for c in $(vmd "$vm" ps -aq); do
        echo "-- $(vmd "$vm" inspect -f '{{.Name}}' "$c")" >&2
        vmd "$vm" logs --tail 15 "$c" >&2 2>&1
      done
    done
  fi
  if [ "${RQP_TEST_KEEP:-0}" = 1 ]; then
    echo "test-vms-ha: left up (RQP_TEST_KEEP=1): DOCKER_HOST=unix://$RUN/<vm>.sock docker ps; work dir $WORK"
  else
    for vm in "${VMS[@]}"; do
      if [ -S "$(vm_sock "$vm")" ] && vmd "$vm" version >/dev/null 2>&1; then
        for project in proc redis sentinel; do vmc "$vm" "$project" down -v -t 3 --remove-orphans >/dev/null 2>&1; done
      fi
      cleanup_vm "$vm"
    done
    ip link del "$BR" 2>/dev/null
    rm -rf "$WORK" "$RUN"
    left=$(ip netns list | grep -c "rqpha-$ID-" || true)
    left=$(( left + $(ip -o link show | grep -c "rh$ID" || true) ))
    [ "$left" = 0 ] || { echo "not ok - teardown left $left namespaces/links named rqpha-$ID-*/rh$ID*" >&2; code=1; }
  fi
  echo "test-vms-ha: took $(since "$T0")s"
  echo "test-vms-ha: $passed passed, $([ "$code" = 0 ] && echo 0 || echo 1) failed"
  exit "$code"
}
trap teardown EXIT
trap 'echo "not ok - line $LINENO: \"$BASH_COMMAND\" exited $?" >&2' ERR

# ------------------------------------------------------------------------------ the observer
# A client on the LAN (this machine), asking as any rqp role does: the Sentinels (user `client`)
# for the primary, then the primary (user `scheduler`) for the workload; the servers' own role
# (user `sentinel`, allowed ROLE and INFO) for promotion and demotion.
cat > "$WORK/observe.py" <<'EOF'
"""The observer of test-vms-ha.sh: what the Sentinels, the Redis servers and the workload say."""

import json
import os
import sys
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rqp.config import Settings
from rqp.connect import connect_redis
from rqp.status import read_progress

SECRETS = os.environ["HA_SECRETS"]
SENTINELS = [(h, int(p)) for h, p in (s.split(":") for s in os.environ["HA_SENTINELS"].split(","))]
# one try per server: a VM that is gone costs the observer half a second, not redis-py's retries
TLS = {"ssl": True, "ssl_ca_certs": f"{SECRETS}/redis_ca.pem", "ssl_check_hostname": True,
       "socket_timeout": 0.5, "socket_connect_timeout": 0.5, "retry": Retry(NoBackoff(), 0)}


def secret(name):
    return open(f"{SECRETS}/{name}").read().strip()


def sentinel_views():
    """Each reachable Sentinel's primary: {sentinel host: primary ip}."""
    views = {}
    for host, port in SENTINELS:
        s = redis.Redis(host=host, port=port, username="client", password=secret("sentinel_client_password"), **TLS)
        try:
            m = s.sentinel_master("rqp")
            if m.get("is_master") and not m.get("is_sdown") and not m.get("is_odown"):
                views[host] = m["ip"]
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError):
            pass
        finally:
            s.close()
    return views


def server(host):
    """A Redis server's role, replication offset and link, as the Sentinels' user sees them."""
    r = redis.Redis(host=host, port=6379, username="sentinel", password=secret("redis_sentinel_password"), **TLS)
    try:
        info = r.info("replication")
        return {"role": info.get("role"), "offset": info.get("master_repl_offset"),
                "link": info.get("master_link_status"), "master": info.get("master_host")}
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return {"role": None}
    finally:
        r.close()


def client():
    env = {
        "RQP_REDIS_URL": f"rediss+sentinel://scheduler@{os.environ['HA_SENTINELS']}/rqp/0",
        "RQP_REDIS_PASSWORD_FILE": f"{SECRETS}/redis_scheduler_password",
        "RQP_REDIS_CA_FILE": f"{SECRETS}/redis_ca.pem",
        "RQP_REDIS_SENTINEL_USERNAME": "client",
        "RQP_REDIS_SENTINEL_PASSWORD_FILE": f"{SECRETS}/sentinel_client_password",
    }
    return connect_redis(Settings.from_mapping({k[4:].lower(): v for k, v in env.items()}), check=False)


def workload(r, w):
    out = {"state": None, "done": 0, "failed": 0}
    p = read_progress(r, w)
    if p is not None:
        out.update(state=p.state, done=p.done, failed=p.failed, total=p.total)
    out["reclaimed"] = int(r.hget(f"rqp:w:{w}:meta", "reclaimed") or 0)
    lease = r.get("rqp:scheduler:leader")
    out["leader"] = lease.decode().split(" ", 1)[1] if lease else None
    return out


def state(w):
    """One JSON line: the Sentinels' views, and the workload as its primary says."""
    out = {"sentinels": sentinel_views()}
    try:
        r = client()
        out.update(workload(r, w))
        r.close()
    except (redis.RedisError, OSError) as exc:
        out["error"] = str(exc).split("\n")[0]
    return out


def fault(name, w, t_fault, old_primary, old_leader, timeout):
    """Until the work resumes after a fault: promoted (two Sentinels name a new primary and it
    says master), leader taken over (the lease names another scheduler), work resumed (more
    records done than at the promotion). Prints one line per event, seconds since the fault."""
    seen, done_at_promotion, new = {}, None, None
    end = time.time() + timeout

    def event(what, text):
        seen[what] = time.time() - t_fault
        print(f"{name}: +{seen[what]:5.1f}s  {text}", flush=True)

    while time.time() < end:
        if "promoted" not in seen:
            views = sentinel_views()
            names = [ip for ip in views.values() if ip != old_primary]
            if len(names) >= 2 and len(set(names)) == 1 and server(names[0])["role"] == "master":
                new = names[0]
                event("promoted", f"Sentinels {sorted(h for h, ip in views.items() if ip == new)} promoted {new}")
        else:
            try:
                r = client()
                st = workload(r, w)
                r.close()
            except (redis.RedisError, OSError):
                time.sleep(0.2)
                continue
            if done_at_promotion is None:
                done_at_promotion = st["done"]
            if "leader" not in seen and st["leader"] and st["leader"] != old_leader:
                event("leader", f"leader lease taken over by {st['leader']} (was {old_leader})")
            if "resumed" not in seen and st["done"] > done_at_promotion:
                event("resumed", f"work resumed: {st['done']} records done ({done_at_promotion} at the promotion)")
            if {"leader", "resumed"} <= set(seen):
                print(json.dumps({"new_primary": new, **{k: round(v, 1) for k, v in seen.items()}}), flush=True)
                return 0
        time.sleep(0.2)
    print(f"{name}: not within {timeout}s: {sorted(seen)} seen", flush=True)
    return 1


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "state":
        print(json.dumps(state(sys.argv[2])))
    elif cmd == "server":
        print(json.dumps(server(sys.argv[2])))
    elif cmd == "fault":
        sys.exit(fault(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5], sys.argv[6], float(sys.argv[7])))
EOF
observe() { HA_SECRETS=$WORK/secrets HA_SENTINELS=$SENTINELS "$PY" "$WORK/observe.py" "$@" 2>>"$WORK/observe.err"; }
observe_in() {  # observe_in VM ARGS...: the observer run inside a VM's namespace (what that side sees)
  local vm=$1; shift
  HA_SECRETS=$WORK/secrets HA_SENTINELS=$SENTINELS nsenter --net="/run/netns/$(ns "$vm")" "$PY" "$WORK/observe.py" "$@" 2>>"$WORK/observe.err"
}
wait_for() {  # wait_for SECONDS DESCRIPTION PYTHON_CONDITION_ON_STATE: poll the observer until true
  local secs=$1 what=$2 cond=$3 end st
  end=$(( $(date +%s) + secs ))
  while :; do
    st=$(observe state "${W:-none}" || true)
    if [ -n "$st" ] && python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if eval(sys.argv[2], {}, d) else 1)' "$st" "$cond" 2>/dev/null; then
      LAST_STATE=$st
      return 0
    fi
    [ "$(date +%s)" -lt "$end" ] || fail "$what: not within ${secs}s (last state: ${st:-none})"
    sleep 0.5
  done
}
wait_server() {  # wait_server VM SECONDS DESCRIPTION CONDITION: poll a Redis server's replication state
  local vm=$1 secs=$2 what=$3 cond=$4 end st
  end=$(( $(date +%s) + secs ))
  while :; do
    st=$(observe server "${VM_IP[$vm]}" || true)
    if [ -n "$st" ] && python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if eval(sys.argv[2], {}, d) else 1)' "$st" "$cond" 2>/dev/null; then
      return 0
    fi
    [ "$(date +%s)" -lt "$end" ] || fail "$what: not within ${secs}s (last: ${st:-none})"
    sleep 0.5
  done
}
scheduler_of() {  # the container host name of VM's scheduler (what its lease names, before ':pid')
  vmd "$1" inspect -f '{{.Config.Hostname}}' "$(vmc "$1" redis ps -q scheduler)"
}
restarts_of() { vmd "$1" inspect -f '{{.RestartCount}}' "$(vmc "$1" redis ps -aq scheduler)"; }

echo "test-vms-ha: LAN $LAN.0/24, vm1 ${VM_IP[vm1]}, vm2 ${VM_IP[vm2]}, vm3 ${VM_IP[vm3]}, redis from $REDIS_IMAGE, $N records"

# ------------------------------------------------------------------------------ 1. images, hosts, secrets
t=$(now)
if [ "${RQP_TEST_SKIP_BUILD:-0}" != 1 ]; then
  RQP_VERSION=$VERSION bash docker/build-images.sh >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; fail "make images"; }
fi
podman save -q -m -o "$WORK/images.tar" "rqp-scheduler:$VERSION" "rqp-processor:$VERSION" "$REDIS_IMAGE" >/dev/null \
  || fail "podman save of rqp-scheduler:$VERSION, rqp-processor:$VERSION and $REDIS_IMAGE (make images first)"
ip link add "$BR" type bridge
ip addr add "$HOSTIP/24" dev "$BR"
ip link set "$BR" up
mkdir -p "$RUN"
for vm in "${VMS[@]}"; do add_vm "$vm"; done
for vm in "${VMS[@]}"; do start_engine "$vm"; done
for vm in "${VMS[@]}"; do vmd "$vm" load -q -i "$WORK/images.tar" >/dev/null || fail "loading the images into VM $vm's engine"; done
rm -f "$WORK/images.tar"
# the secrets: made once with every VM named in the certificate, then each VM gets its own files
RQP_VERSION=$VERSION ENGINE=podman bash compose/init-secrets.sh --ha --host "${VM_IP[vm1]}" --host "${VM_IP[vm2]}" \
  --host "${VM_IP[vm3]}" "$WORK/secrets" >"$WORK/init-secrets.log" 2>&1 || { cat "$WORK/init-secrets.log" >&2; fail "init-secrets.sh --ha"; }
REDIS_VM_FILES=(kek.pem trusted_signers.pem trusted_operators.pem azure_conn redis_ca.pem redis_server.pem redis_server.key
  redis_users.acl redis_ha_users.acl redis_replica_password redis_scheduler_password redis_metrics_password
  redis_console_password redis_console_actions_password console_password console_operator.pem
  redis_sentinel_password sentinel_users.acl sentinel_client_password)
PROC_FILES=(kek.pem trusted_signers.pem azure_conn redis_ca.pem redis_processor_password redis_metrics_password sentinel_client_password)
SENTINEL_FILES=(redis_ca.pem redis_server.pem redis_server.key redis_sentinel_password sentinel_users.acl)
copy_secrets "$WORK/vm/vm1/secrets" "${REDIS_VM_FILES[@]}" redis_processor_password
copy_secrets "$WORK/vm/vm2/secrets" "${REDIS_VM_FILES[@]}" redis_processor_password
copy_secrets "$WORK/vm/vm3/secrets" "${SENTINEL_FILES[@]}" "${PROC_FILES[@]}"
[ "$(stat -c '%u %a' "$WORK/vm/vm2/secrets/redis_replica_password")" = "10002 400" ] || fail "redis_replica_password is not Redis's (uid 10002, 0400)"
[ "$(stat -c '%u %a' "$WORK/vm/vm3/secrets/sentinel_client_password")" = "10001 400" ] || fail "sentinel_client_password is not the roles' (uid 10001, 0400)"
# the blob store: one directory every VM mounts (a file share)
install -d -o 10001 -g 10001 -m 0700 "$WORK/blobs"
for vm in "${VMS[@]}"; do
  cat > "$WORK/$vm.env" <<EOF
RQP_SECRETS_DIR=$WORK/vm/$vm/secrets
ROLES_ENV_FILE=$WORK/$vm.env
RQP_VERSION=$VERSION
REDIS_IMAGE=$REDIS_IMAGE
REDIS_BIND=${VM_IP[$vm]}
REDIS_PORT=6379
REDIS_PRIMARY=${VM_IP[vm1]}
REDIS_SENTINELS=$SENTINELS
SENTINEL_BIND=${VM_IP[$vm]}
SENTINEL_DOWN_AFTER_MS=$DOWN_AFTER_MS
SENTINEL_FAILOVER_TIMEOUT_MS=$FAILOVER_TIMEOUT_MS
RQP_SCHEDULER_HOST=${VM_IP[vm1]}
RQP_BLOB_URL=file:///data/blobs
RQP_BLOB_DIR=$WORK/blobs
RQP_LEASE_SECONDS=$LEASE
RQP_WORKERS=2
RQP_PROCESSOR_GRACE=10
RQP_STOP_GRACE_PERIOD=15s
EOF
done
ok "3 VMs (own network namespace and engine each) on LAN $LAN.0/24; secrets (init-secrets.sh --ha, a certificate naming the 3 VMs) copied per VM with owners and modes kept"
echo "    [timing] images + hosts + secrets: $(since "$t")s"

# ------------------------------------------------------------------------------ 2. Redis, Sentinels, schedulers, processors
t=$(now)
vmc vm1 redis up -d redis >"$WORK/up-vm1-redis.log" 2>&1 || { cat "$WORK/up-vm1-redis.log" >&2; fail "vm1: scheduler-vm.yml + ha.yml up redis"; }
vmc vm2 redis up -d redis >"$WORK/up-vm2-redis.log" 2>&1 || { cat "$WORK/up-vm2-redis.log" >&2; fail "vm2: scheduler-vm.yml + ha.yml up redis"; }
wait_server vm2 60 "vm2's Redis a replica of vm1's over TLS as user replica" "role == 'slave' and link == 'up'"
for vm in "${VMS[@]}"; do
  vmc "$vm" sentinel up -d >"$WORK/up-$vm-sentinel.log" 2>&1 || { cat "$WORK/up-$vm-sentinel.log" >&2; fail "$vm: sentinel.yml up"; }
done
wait_for 60 "the three Sentinels naming vm1's Redis the primary" "len(sentinels) == 3 and set(sentinels.values()) == {'${VM_IP[vm1]}'}"
ok "vm1's Redis primary, vm2's its replica (TLS, user replica), three Sentinels (TLS, users sentinel and client) agree on the primary"
vmc vm1 redis up -d scheduler >"$WORK/up-vm1-scheduler.log" 2>&1 || { cat "$WORK/up-vm1-scheduler.log" >&2; fail "vm1: up scheduler"; }
H1=$(scheduler_of vm1)
wait_for 60 "vm1's scheduler leading" "str(leader).startswith('$H1:')"
vmc vm2 redis up -d scheduler >"$WORK/up-vm2-scheduler.log" 2>&1 || { cat "$WORK/up-vm2-scheduler.log" >&2; fail "vm2: up scheduler"; }
H2=$(scheduler_of vm2)
for vm in "${VMS[@]}"; do
  vmc "$vm" proc up -d --scale processor=1 processor >"$WORK/up-$vm-proc.log" 2>&1 || { cat "$WORK/up-$vm-proc.log" >&2; fail "$vm: processor-vm.yml + ha-processor.yml up"; }
done
# the standby: running, not leading (its log says it waits)
end=$(( $(date +%s) + 30 ))
until vmd vm2 logs "$(vmc vm2 redis ps -q scheduler)" 2>&1 | grep -q "standby: .* leads"; do
  [ "$(date +%s)" -lt "$end" ] || { vmd vm2 logs "$(vmc vm2 redis ps -q scheduler)" >&2; fail "vm2's scheduler does not say it stands by"; }
  sleep 0.5
done
st=$(observe state none)
[ "$(field "$st" "str(leader).startswith('$H1:')")" = True ] || fail "the leader changed when vm2's scheduler started: $st"
ok "vm1's scheduler leads ($H1), vm2's stands by ($H2); processors on every VM find the primary through the Sentinels"
echo "    [timing] up: $(since "$t")s"

# ------------------------------------------------------------------------------ 3. the workload
W="ha-$(python3 -c 'import secrets; print(secrets.token_hex(3))')"
write_workload_inputs "$WORK/in" "$N" "$SLEEP"
# the submitter: a machine on the LAN with the public KEK, its signing key, the CA, its Redis
# password and the Sentinels' client password; it writes the workload to the shared blob store
SUB=$WORK/submitter
install -d -o 10001 -g 10001 -m 0700 "$SUB"
for f in kek.pub.pem signer.pem redis_ca.pem redis_submitter_password sentinel_client_password; do cp -p "$WORK/secrets/$f" "$SUB/"; done
podman run --rm --name "rqp-ha-$ID-submitter" --network host --user 10001:10001 --read-only --tmpfs /tmp --cap-drop ALL \
  --security-opt no-new-privileges -v "$WORK/in:/in:ro" -v "$SUB:/run/secrets:ro" -v "$WORK/blobs:/data/blobs" \
  -e "RQP_REDIS_URL=rediss+sentinel://submitter@$SENTINELS/rqp/0" -e RQP_REDIS_PASSWORD_FILE=/run/secrets/redis_submitter_password \
  -e RQP_REDIS_SENTINEL_USERNAME=client -e RQP_REDIS_SENTINEL_PASSWORD_FILE=/run/secrets/sentinel_client_password \
  -e RQP_REDIS_CA_FILE=/run/secrets/redis_ca.pem -e RQP_KEK_PUBLIC_FILE=/run/secrets/kek.pub.pem \
  -e RQP_SIGNING_KEY_FILE=/run/secrets/signer.pem -e RQP_BLOB_URL=file:///data/blobs \
  "rqp-scheduler:$VERSION" rqp pack /in/data.jsonl /in/process.py --id "$W" --submit >"$WORK/pack.log" 2>&1 \
  || { cat "$WORK/pack.log" >&2; fail "pack and submit through the Sentinels"; }
grep -q "(submitted)" "$WORK/pack.log" || { cat "$WORK/pack.log" >&2; fail "rqp pack did not submit"; }
TW=$(now)
mark "workload $W ($N records, ${SLEEP}s each) submitted from $HOSTIP through the Sentinels"
wait_for 90 "$W a fifth done" "state == 'running' and done >= $N // 5"
ok "submitted through the Sentinels; vm1's scheduler runs it, the processors of the 3 VMs work on it"

# ------------------------------------------------------------------------------ 4a. vm1 partitioned
run_fault() {  # run_fault NAME OLD_PRIMARY OLD_LEADER T_FAULT: the observer's timeline, in the background
  observe fault "$1" "$W" "$4" "$2" "$3" 120 >"$WORK/fault-$1.log" &
  WATCH_PID=$!
}
end_fault() {  # end_fault NAME T_FAULT: wait for the observer; its events join the timeline
  local code=0
  wait "$WATCH_PID" || code=$?
  WATCH_PID=""
  sed 's/^/    /' "$WORK/fault-$1.log"
  # what the Sentinels themselves logged (their clocks are this machine's): the election and the switch
  for vm in "${VMS[@]}"; do
    [ -n "${VM_PID[$vm]:-}" ] || continue
    vmd "$vm" logs --since "$(date -u -d "@${2%.*}" +%Y-%m-%dT%H:%M:%SZ)" "$(vmc "$vm" sentinel ps -q sentinel)" 2>&1 \
      | grep -E '\+sdown master|\+odown|\+try-failover|\+elected-leader|\+switch-master|Next failover delay' \
      | python3 -c '
import datetime, sys
t0, vm = float(sys.argv[1]), sys.argv[2]
for line in sys.stdin:  # "1:X 07 Dec 2026 00:23:31.482 # +sdown master rqp ...", on this clock
    parts = line.split()
    what = " ".join(parts[6:])[:72]
    at = datetime.datetime.strptime(" ".join(parts[1:5]), "%d %b %Y %H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
    print(f"    {vm} sentinel: +{at.timestamp() - t0:5.1f}s  {what}")' "$2" "$vm" || true
  done
  [ "$code" = 0 ] || fail "fault $1: the failover did not complete (see above)"
  FAULT_RESULT=$(tail -1 "$WORK/fault-$1.log")
}
st=$(observe state "$W")
leader=$(field "$st" leader)
restarts1=$(restarts_of vm1)
offset1=$(field "$(observe server "${VM_IP[vm1]}")" offset)
tA=$(now)
mark "FAULT a: vm1 (Redis primary, leader $leader) cut off from the LAN for ${PARTITION}s at $(field "$st" "done") records done"
ip link set "$(nic vm1)" down
run_fault a "${VM_IP[vm1]}" "$leader" "$tA"
sleep "$PARTITION"   # the fault's length (what is waited for comes after, on conditions)
# what vm1's side saw: its Redis still primary, written to (its scheduler renewing its lease)
inside=$(observe_in vm1 server "${VM_IP[vm1]}")
ip link set "$(nic vm1)" up
mark "vm1 reconnected after ${PARTITION}s; on its side meanwhile: $inside (offset $offset1 before)"
[ "$(field "$inside" role)" = master ] && [ "$(field "$inside" offset)" -gt "$offset1" ] \
  || fail "vm1's Redis was not an isolated primary accepting writes during the partition: $inside"
end_fault a "$tA"
tA_resumed=$(field "$FAULT_RESULT" resumed)
[ "$(field "$FAULT_RESULT" new_primary)" = "${VM_IP[vm2]}" ] || fail "fault a promoted $(field "$FAULT_RESULT" new_primary), not vm2"
mark "HEALED a: vm2's Redis promoted at +$(field "$FAULT_RESULT" promoted)s, its scheduler leading at +$(field "$FAULT_RESULT" leader)s, work resumed at +${tA_resumed}s after the fault"
wait_server vm1 60 "vm1's Redis demoted by Sentinel to a replica of vm2's, in sync" "role == 'slave' and master == '${VM_IP[vm2]}' and link == 'up'"
tA_demoted=$(since "$tA")
end=$(( $(date +%s) + 60 ))
until [ "$(restarts_of vm1)" -gt "$restarts1" ] && vmd vm1 logs "$(vmc vm1 redis ps -q scheduler)" 2>&1 | grep -q "standby: .* leads"; do
  [ "$(date +%s)" -lt "$end" ] || { vmd vm1 logs --tail 20 "$(vmc vm1 redis ps -aq scheduler)" >&2; fail "vm1's scheduler, fenced, did not restart as the standby"; }
  sleep 0.5
done
exit75=$(vmd vm1 logs "$(vmc vm1 redis ps -q scheduler)" 2>&1 | grep -ci "fence\|lease" || true)
st=$(observe state "$W")
[ "$(field "$st" "str(leader).startswith('$H2:')")" = True ] || fail "after fault a the leader is not vm2's scheduler: $st"
mark "vm1's Redis a replica of vm2's at +${tA_demoted}s; vm1's scheduler fenced, restarted ($(restarts_of vm1) restart(s)) as the standby"
ok "fault a: vm1 partitioned ${PARTITION}s with writes on its side: vm2 promoted, vm2's standby leads, work resumed $tA_resumed s after the fault; vm1 rejoined as replica and standby ($exit75 fence/lease lines in its scheduler's log)"

# ------------------------------------------------------------------------------ 4b. vm2 killed whole
st=$(observe state "$W")
[ "$(field "$st" state)" = running ] && [ "$(field "$st" "done")" -lt $(( N * 9 / 10 )) ] \
  || fail "the workload is too far along for fault b ($st): raise RQP_TEST_VMS_RECORDS or RQP_TEST_VMS_RECORD_SECONDS"
leader=$(field "$st" leader)
tB=$(now)
mark "FAULT b: vm2 (Redis primary, leader $leader, a processor) killed whole at $(field "$st" "done") records done"
run_fault b "${VM_IP[vm2]}" "$leader" "$tB"
ip link set "$(nic vm2)" down
kill_vm vm2
mark "vm2 dead: its link down, its engine and every process of its containers SIGKILLed"
end_fault b "$tB"
tB_resumed=$(field "$FAULT_RESULT" resumed)
[ "$(field "$FAULT_RESULT" new_primary)" = "${VM_IP[vm1]}" ] || fail "fault b promoted $(field "$FAULT_RESULT" new_primary), not vm1"
mark "HEALED b: vm1's Redis promoted at +$(field "$FAULT_RESULT" promoted)s, its scheduler leading at +$(field "$FAULT_RESULT" leader)s, work resumed at +${tB_resumed}s after the fault"

wait_for "$DEADLINE" "workload $W done" "state in ('done', 'failed', 'finished') or failed > 0"
tDone=$(now)
mark "workload $W: state $(field "$LAST_STATE" state), $(field "$LAST_STATE" "done") done, $(field "$LAST_STATE" failed) failed"
[ "$(field "$LAST_STATE" state)" = "done" ] && [ "$(field "$LAST_STATE" failed)" = 0 ] && [ "$(field "$LAST_STATE" "done")" = "$N" ] \
  || fail "workload $W ended $LAST_STATE"
ok "fault b: vm2 killed whole: vm1 promoted, vm1's scheduler leads, work resumed $tB_resumed s after the fault; the workload done, $N records, 0 failed"

# ------------------------------------------------------------------------------ 5. exactly once
vmc vm1 redis exec -T scheduler rqp results "$W" > "$WORK/results.jsonl" || fail "rqp results $W on vm1"
python3 tools/check_results_once.py "$WORK/results.jsonl" "$N" || fail "the results are not every record exactly once"
ok "every one of the $N results is present once and correct (0 lost, 0 duplicated) after a partition and a VM killed"

# ------------------------------------------------------------------------------ 6. down
for vm in vm1 vm3; do
  for project in proc redis sentinel; do
    vmc "$vm" "$project" down -v -t 5 --remove-orphans >"$WORK/down-$vm-$project.log" 2>&1 || { cat "$WORK/down-$vm-$project.log" >&2; fail "down -v on $vm ($project)"; }
  done
  left=$(vmd "$vm" ps -aq; vmd "$vm" volume ls -q; vmd "$vm" network ls --format '{{.Name}}' | grep -vxE 'podman|bridge' || true)
  [ -z "$left" ] || fail "down -v left on $vm: $left"
done
ok "down -v on the surviving VMs left no container, volume or network behind"

echo
echo "test-vms-ha: timeline (seconds since the workload was submitted)"
printf '%s\n' "${TIMELINE[@]}"
echo "test-vms-ha: fault a (vm1 partitioned ${PARTITION}s): work resumed ${tA_resumed}s after the fault"
echo "test-vms-ha: fault b (vm2 killed whole): work resumed ${tB_resumed}s after the fault; workload done $(python3 -c "print(f'{$tDone - $tB:.1f}')")s after it"
