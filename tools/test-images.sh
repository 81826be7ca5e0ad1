#!/usr/bin/env bash
# test-images.sh -- `make test-images`: the container images and the all-in-one Compose stack,
# tested for real (no mocks): build the images, start the stack with 3 processor replicas, pack
# and run a 1,000-record encrypted workload through it, check every result, that every replica
# worked, that a processor stopped mid-chunk finishes it and exits within its grace period, that
# no secret or plaintext shows in `docker inspect`, image history or logs, and that `down`
# leaves no container, network or volume behind. Then the two-VM layout: scheduler-vm.yml and
# processor-vm.yml as two Compose projects, the processors reaching the scheduler's Redis over
# TLS by the name in its certificate, a workload through them, and the refusals (no CA, a name
# not in the certificate, the console's read-only user writing, a processor's user submitting).
# In both layouts the web console (rqp-console) is checked over HTTP from this machine, as an
# operator's SSH tunnel reaches it (tools/check_console.py): login required, CSRF enforced, the
# workload with its counts, every processor and worker in the fleet, the metrics logger's VMs.
#
#   tools/test-images.sh                       # ENGINE=docker (podman's socket if no Docker daemon)
#   ENGINE=podman tools/test-images.sh
#   RQP_TEST_SKIP_BUILD=1 RQP_TEST_RECORDS=1000 RQP_TEST_SCALE=3 tools/test-images.sh
#   RQP_TEST_KEEP=1 tools/test-images.sh       # leave the stack up afterwards, for a look
#
# Needs: a container engine with `docker compose` (or podman-compose), python3 on the host, the
# wheelhouse (make wheels). On CI machines without Docker, ../shared/containers/setup-containers.sh
# provisions podman + the docker compose CLI and the offline base image.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=docker/engine.sh
. docker/engine.sh
[ -n "$COMPOSE" ] || { echo "test-images: neither 'docker compose' nor podman-compose is installed" >&2; exit 2; }
command -v python3 >/dev/null || { echo "test-images: python3 is needed on the host" >&2; exit 2; }

N=${RQP_TEST_RECORDS:-1000}
SCALE=${RQP_TEST_SCALE:-3}
N_SLOW=${RQP_TEST_SLOW_RECORDS:-240}
GRACE=20                      # rqp-processor --grace; Compose's stop_grace_period is GRACE+5
DEADLINE=${RQP_TEST_DEADLINE:-240}
VERSION=${RQP_VERSION:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' shared/pyproject.toml | head -1)}
PREFIX=${RQP_IMAGE_PREFIX:-}
if [ -z "${REDIS_IMAGE:-}" ]; then
  # CI has no registry: Redis is Debian's redis-server from the same offline base image
  if [ "$BASE_IMAGE" = localhost/pyredis-base:bookworm ]; then REDIS_IMAGE=$BASE_IMAGE; else REDIS_IMAGE=redis:7; fi
fi
# Nothing from the caller's environment may change the stack under test: the env file below is all.
for v in $(compgen -e); do
  case "$v" in RQP_*|CONSOLE_PORT|AZURITE_IMAGE|COMPOSE_PROJECT_NAME|COMPOSE_FILE|COMPOSE_PROFILES) unset "$v" ;; esac
done

PROJECT=rqp-test-$$
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/rqp-test-images.XXXXXX")
chmod 0755 "$WORK"
C="$COMPOSE -p $PROJECT -f $ROOT/compose/all-in-one.yml --env-file $WORK/test.env"
passed=0
failed=0
stack_up=0
two_up=0          # the two-VM projects of stage 8
CS=""             # ... the scheduler VM's compose command, and
CP=""             # ... the processor VM's
T0=$(date +%s.%N)
declare -a TIMINGS=()

# shellcheck source=tools/lib.sh
. tools/lib.sh   # now, since, ok, fail, run_once, copy_secrets
timing() { TIMINGS+=("$1: $2s"); echo "    [timing] $1: $2s"; }
check() {  # check "description" command...
  local what=$1; shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}

diagnostics() {
  echo "---- diagnostics (project $PROJECT)" >&2
  $C ps -a >&2 || true
  $C logs --no-color --tail 60 >&2 || true
}

teardown() {
  local code=$?
  set +e
  if [ "$two_up" = 1 ]; then
    for c in "$CP" "$CS"; do
      if [ "$code" != 0 ]; then echo "---- diagnostics ($c)" >&2; $c ps -a >&2; $c logs --no-color --tail 40 >&2; fi
      [ "${RQP_TEST_KEEP:-0}" = 1 ] || $c down -v -t 10 --remove-orphans >/dev/null 2>&1
    done
  fi
  if [ "$stack_up" = 1 ]; then
    if [ "$code" != 0 ]; then diagnostics; fi
    if [ "${RQP_TEST_KEEP:-0}" = 1 ]; then
      echo "test-images: stack left up: $C ..."
    else
      $C down -v -t 30 --remove-orphans >/dev/null 2>&1
    fi
  fi
  [ "${RQP_TEST_KEEP:-0}" = 1 ] || rm -rf "$WORK"
  if [ "$code" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
  echo "test-images: took $(since "$T0")s"
  echo "test-images: $passed passed, $failed failed"
  exit "$code"
}
trap teardown EXIT
# a command failing outside check/fail says where, instead of ending the run silently
trap 'echo "not ok - line $LINENO: \"$BASH_COMMAND\" exited $?" >&2' ERR

# Redis as a role sees it: a client in that role's container with the role's own Redis user,
# password file and CA (the Redis container holds no password, only the ACL's hashes). Prints the
# reply like `redis-cli --raw`; a refused command prints "<Error>: <message>" and exits 3.
REDIS_PY='
import sys, time
import redis
from rqp.config import Settings
from rqp.connect import connect_redis


def show(v):
    if isinstance(v, (list, tuple, set)):
        for x in v:
            show(x)
    elif isinstance(v, dict):
        for k, x in v.items():
            print(f"{k}:{x}")
    else:
        print(v.decode(errors="replace") if isinstance(v, bytes) else v)


args = sys.argv[1:]
try:
    r = connect_redis(Settings.load(), check=False)
    if args[0] == "--wait":  # --wait SECONDS EXPECTED COMMAND...: until the reply is EXPECTED (a number: at least it)
        end, want, args = time.monotonic() + float(args[1]), args[2], args[3:]
        while True:
            try:
                got = r.execute_command(*args)
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
                # Redis of a stack just started may still refuse or be loading: keep waiting
                if time.monotonic() > end:
                    print(f"timed out: {args}: {type(exc).__name__}: {exc}")
                    sys.exit(1)
                time.sleep(0.05)
                continue
            got = got.decode() if isinstance(got, bytes) else str(got)
            if got == want or (want.isdigit() and got.isdigit() and int(got) >= int(want)):
                break
            if time.monotonic() > end:
                print(f"timed out: {args} = {got!r}, not {want!r}")
                sys.exit(1)
            time.sleep(0.05)
    else:
        # the DNS server of podman (aardvark-dns) reloads whenever a container starts or stops on the
        # host, and a lookup during the reload fails "temporarily" (EAI_AGAIN): ask again, 10 s
        end = time.monotonic() + 10
        while True:
            try:
                reply = r.execute_command(*args)
                break
            except redis.ConnectionError as exc:
                if "Temporary failure in name resolution" not in str(exc) or time.monotonic() > end:
                    raise
                time.sleep(0.2)
        show(reply)
except redis.RedisError as exc:
    print(f"{type(exc).__name__}: {exc}")
    sys.exit(3)
'
redis_as() {  # redis_as SERVICE [--wait SECONDS EXPECTED] COMMAND ARGS...   (in the project of $C)
  local svc=$1; shift
  $C exec -T "$svc" python -c "$REDIS_PY" "$@"
}
redis_cli() { redis_as scheduler "$@"; }
rqp() { $C exec -T scheduler rqp "$@"; }
wait_done() {  # wait_done WORKLOAD: poll `rqp status --json` until done, with a deadline
  local w=$1 end=$(( $(date +%s) + DEADLINE )) st=""
  while :; do
    st=$(rqp status "$w" --json 2>/dev/null || true)
    case "$st" in *'"state": "done"'*) echo "    $st"; return 0 ;; *'"state": "failed"'*) echo "    $st" >&2; return 1 ;; esac
    if [ "$(date +%s)" -gt "$end" ]; then echo "    timed out after ${DEADLINE}s: $st" >&2; return 1; fi
    sleep 0.5
  done
}
one_off() {  # one_off NAME ARGS...: `compose run --no-deps` (in the project of $C) whose exit code is trustworthy
  local name="$PROJECT-$1"; shift
  # shellcheck disable=SC2086  # $C is a command line
  run_once "$ENGINE" "$name" $C run --no-deps --name "$name" "$@"
}
engine_one_off() {  # engine_one_off NAME ARGS...: `$ENGINE run` (no Compose) with a trustworthy exit code
  local name="$PROJECT-$1"; shift
  run_once "$ENGINE" "$name" "$ENGINE" run --name "$name" "$@"
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# the scheduler VM's name, as processor VMs reach it and Redis's certificate names it (init-secrets.sh --host)
VM_NAME=scheduler-vm.rqp.test

echo "test-images: $ENGINE via $COMPOSE, base $BASE_IMAGE, redis $REDIS_IMAGE, images ${PREFIX}rqp-*:$VERSION, project $PROJECT"

# ------------------------------------------------------------------------------ 0. the files
t=$(now)
# documented: a VAR= line, or #VAR= for a setting only an optional layout reads (the HA files)
undocumented=$(grep -oh '\${[A-Z_]*' compose/*.yml | tr -d '${' | sort -u | while read -r v; do grep -Eq "^#?$v=" compose/.env.example || echo "$v"; done)
[ -z "$undocumented" ] || fail "compose/.env.example does not document: $undocumented"
for f in all-in-one scheduler-vm processor-vm; do
  RQP_SECRETS_DIR=/nonexistent RQP_BLOB_URL=file:///data/blobs RQP_SCHEDULER_HOST=10.0.0.4 REDIS_BIND=10.0.0.4 \
    $COMPOSE -f "compose/$f.yml" --env-file /dev/null config -q 2>"$WORK/config.err" || { cat "$WORK/config.err" >&2; fail "compose/$f.yml is not valid"; }
done
# Compose reports whichever use of a missing variable it meets first, in no fixed order, so every
# use of a required variable carries the same message (a CI run once met the short one)
mixed=$(grep -oh '\${[A-Z_]*:?[^}]*}' compose/*.yml | sort -u | sed 's/:?.*//' | uniq -d)
[ -z "$mixed" ] || fail "a required variable has more than one message in compose/*.yml: $mixed"
ok "the 3 Compose files are valid and compose/.env.example documents every variable they use"
if RQP_SECRETS_DIR=/nonexistent RQP_BLOB_URL=file:///data/blobs $COMPOSE -f compose/scheduler-vm.yml --env-file /dev/null config -q 2>"$WORK/config.err"; then
  fail "scheduler-vm.yml starts without REDIS_BIND (Redis would be published on every interface)"
fi
grep -q "set REDIS_BIND in compose/.env to this VM's private address" "$WORK/config.err" || { cat "$WORK/config.err" >&2; fail "no clear message without REDIS_BIND"; }
for f in all-in-one scheduler-vm processor-vm; do
  if grep -nE "redis://|protected-mode no|requirepass" "compose/$f.yml"; then fail "compose/$f.yml still has plaintext Redis, protected mode off or one shared password"; fi
done
ok "scheduler-vm.yml refuses to start without REDIS_BIND; no Compose file uses plaintext redis://, protected-mode no or requirepass"

# ------------------------------------------------------------------------------ 1. images
if [ "${RQP_TEST_SKIP_BUILD:-0}" != 1 ]; then
  RQP_VERSION=$VERSION RQP_IMAGE_PREFIX=$PREFIX bash docker/build-images.sh
fi
for role in scheduler processor metrics-logger console; do
  img="${PREFIX}rqp-$role:$VERSION"
  user=$($ENGINE image inspect -f '{{.Config.User}}' "$img")
  [ "$user" = "10001:10001" ] || fail "image $img runs as '$user', not the non-root 10001:10001"
done
ok "4 images built, each running as the non-root user 10001"
ep=$($ENGINE image inspect -f '{{json .Config.Entrypoint}}' "${PREFIX}rqp-processor:$VERSION")
[ "$ep" = '["/opt/rqp/role-bin/rqp-processor"]' ] || fail "processor entrypoint is $ep, not rqp-processor (through as-role) in exec form"
ep=$($ENGINE image inspect -f '{{json .Config.Entrypoint}} {{.Config.Labels}}' "${PREFIX}rqp-console:$VERSION")
case "$ep" in '["/opt/rqp/bin/rqp-console"] '*rqp.role:console*) ;; *) fail "console image: entrypoint and labels are $ep" ;; esac
ok "processor and console images: their programs as the entrypoint (exec form)"
for role in scheduler processor metrics-logger console; do
  found=$($ENGINE run --rm --network none --entrypoint /bin/sh "${PREFIX}rqp-$role:$VERSION" -c \
    'command -v pip pip3 gcc cc 2>/dev/null; ls -d /wheels /opt/rqp/lib/python3.11/site-packages/pip 2>/dev/null; echo checked' 2>&1)
  [ "$found" = checked ] || fail "the $role image carries pip, a compiler or the wheelhouse: $found"
done
ok "no pip, compiler or wheel files in the final images"
timing "images: build (cached layers) + checks" "$(since "$t")"

# ------------------------------------------------------------------------------ 2. secrets, env, stack
t=$(now)
ENGINE=$ENGINE RQP_VERSION=$VERSION RQP_IMAGE_PREFIX=$PREFIX bash compose/init-secrets.sh --host "$VM_NAME" "$WORK/secrets" >/dev/null
PORT=$(free_port)
cat > "$WORK/test.env" <<EOF
ROLES_ENV_FILE=$WORK/test.env
RQP_SECRETS_DIR=$WORK/secrets
RQP_VERSION=$VERSION
RQP_IMAGE_PREFIX=$PREFIX
BASE_IMAGE=$BASE_IMAGE
REDIS_IMAGE=$REDIS_IMAGE
RQP_WORKERS=1
RQP_CHUNK_SIZE=25
RQP_ADAPTIVE_CHUNKS=false
RQP_PROCESSOR_GRACE=$GRACE
RQP_STOP_GRACE_PERIOD=$((GRACE + 5))s
RQP_METRICS_INTERVAL=5
RQP_METRICS_HOST_NAME=test-images
CONSOLE_PORT=$PORT
EOF
stack_up=1
$C up -d --no-build --pull never --scale "processor=$SCALE" >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "compose up"; }
timing "up -d --scale processor=$SCALE" "$(since "$t")"
end=$(( $(date +%s) + 90 ))
until redis_cli --wait 5 "$SCALE" scard rq:workers:rqp >/dev/null 2>&1; do
  [ "$(date +%s)" -lt "$end" ] || fail "$SCALE processor workers did not register with Redis within 90s"
done
ok "stack up: Redis (TLS, a user per role, AOF) + scheduler + $SCALE processors + metrics logger + console; $SCALE workers registered"
persistence=$(redis_cli info persistence)
grep -qx "aof_enabled:1" <<<"$persistence" || fail "Redis AOF is off"
anon=$($C exec -T -e RQP_REDIS_PASSWORD_FILE= -e RQP_REDIS_URL=rediss://redis:6379/0 scheduler python -c "$REDIS_PY" ping 2>&1 || true)
case "$anon" in *"Authentication required"*) ;; *) fail "Redis answered a client without user and password: $anon" ;; esac
ok "Redis has AOF on and refuses a client without user and password"
timing "stack ready" "$(since "$t")"

# ------------------------------------------------------------------------------ 3. the workload
t=$(now)
MARKER="rqp-plaintext-marker-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
W="images-$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
mkdir -p "$WORK/in"
python3 - "$N" "$MARKER" "$WORK" <<'EOF'
import json, random, sys
sys.path.insert(0, "examples")
from make_data import expected, record
n, marker, work = int(sys.argv[1]), sys.argv[2], sys.argv[3]
rng = random.Random(4)
with open(f"{work}/in/data.jsonl", "w") as data, open(f"{work}/expected.json", "w") as exp:
    want = {}
    for i in range(n):
        rec = record(i, rng)
        rec["memo"] = f"{marker}-{i}-" + rec["memo"]
        data.write(json.dumps(rec) + "\n")
        want[i] = expected(rec)
    json.dump(want, exp)
EOF
cp examples/process.py "$WORK/in/process.py"
chmod 0644 "$WORK/in/"*
chmod 0755 "$WORK/in"
one_off pack -v "$WORK/in:/in:ro" submit rqp pack /in/data.jsonl /in/process.py --id "$W" --submit >"$WORK/pack.log" 2>&1 \
  || { cat "$WORK/pack.log" >&2; fail "rqp pack --submit in a one-off submit container"; }
grep -q "packed workload $W.*signed by sha256:.*(submitted)" "$WORK/pack.log" || { cat "$WORK/pack.log" >&2; fail "rqp pack did not report the workload signed and submitted"; }
ok "packed, signed and submitted $N records ($W) with 'compose run --no-deps submit rqp pack' (no private KEK in that container)"
wait_done "$W" || fail "workload $W did not finish"
ok "the serving scheduler ran $W to done"
timing "workload of $N records (pack + run)" "$(since "$t")"

rqp results "$W" > "$WORK/results.jsonl"
python3 - "$WORK" "$N" <<'EOF' || fail "results differ from the expected values"
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
want = {int(k): v for k, v in json.load(open(f"{work}/expected.json")).items()}
got = {}
for line in open(f"{work}/results.jsonl"):
    doc = json.loads(line)
    assert doc["id"] not in got, f"record {doc['id']} twice"
    got[doc["id"]] = doc["result"]
assert len(got) == n, f"{len(got)} results for {n} records"
bad = [i for i in want if got.get(i) != want[i]]
assert not bad, f"{len(bad)} wrong results, e.g. record {bad[0]}: {got.get(bad[0])} != {want[bad[0]]}"
EOF
ok "all $N results decrypt to the expected values"

# status records name their worker (hostname:pid); the hostnames are the replicas' container ids
: > "$WORK/events.jsonl"
end=$(( $(date +%s) + 60 ))
while :; do
  rqp events --workload "$W" --max 1000 --wait 1 >> "$WORK/events.jsonl" 2>/dev/null || true
  if python3 -c 'import json,sys; ids={d["id"] for d in map(json.loads, open(sys.argv[1])) if d.get("state")=="done"}; sys.exit(len(ids) < int(sys.argv[2]))' "$WORK/events.jsonl" "$N"; then break; fi
  [ "$(date +%s)" -lt "$end" ] || fail "status queue did not yield $N done records within 60s"
done
for id in $($C ps -q processor); do $ENGINE inspect -f '{{.Config.Hostname}} {{.Name}}' "$id"; done > "$WORK/replicas.txt"
python3 - "$WORK" "$N" "$SCALE" <<'EOF' || fail "not every processor replica processed records"
import collections, json, sys
work, n, scale = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
hosts = dict(line.split() for line in open(f"{work}/replicas.txt") if line.strip())
assert len(hosts) == scale, f"{len(hosts)} processor containers, expected {scale}"
by = collections.Counter()
seen = set()
for d in map(json.loads, open(f"{work}/events.jsonl")):
    if d.get("state") == "done" and d["id"] not in seen:
        seen.add(d["id"])
        by[d["worker"].split(":")[0]] += 1
unknown = set(by) - set(hosts)
assert not unknown, f"records processed by unknown hosts {unknown}"
idle = [hosts[h] for h in hosts if by[h] == 0]
assert not idle, f"replicas {idle} processed nothing: {dict(by)}"
print("    records per replica: " + ", ".join(f"{hosts[h].lstrip('/')}={by[h]}" for h in sorted(hosts, key=lambda h: hosts[h])))
EOF
ok "all $SCALE processor replicas processed records"

# ------------------------------------------------------------------------------ 3b. the sandbox in the containers
sbx_proc=$($C logs --no-color processor 2>&1 | grep -m1 "rqp-processor: sandbox:" || true)
sbx_sched=$($C logs --no-color scheduler 2>&1 | grep -m1 "sandbox:" || true)
echo "    processor: ${sbx_proc#*rqp-processor: }"
echo "    scheduler: ${sbx_sched#*INFO }"
case "$sbx_proc$sbx_sched" in *MISSING*|"") fail "the sandbox is not complete in the containers" ;; esac
case "$sbx_proc" in *"landlock ABI"*seccomp*rlimits*) ;; *) fail "the processor's sandbox lacks Landlock, seccomp or rlimits: $sbx_proc" ;; esac
for line in "$sbx_proc" "$sbx_sched"; do
  case "$line" in *"own uid 65534"*) ;; *) fail "the roles' script processes do not run under their own uid 65534: $line" ;; esac
done
W3="${W}-insider"
cat > "$WORK/in/insider.py" <<'PY'
import os, socket

SECRETS = ("/run/secrets/kek", "/run/secrets/redis_processor_password")


def _try(fn):
    try:
        return "got " + str(fn())[:40]
    except BaseException as exc:  # noqa: BLE001
        return "blocked: " + type(exc).__name__


def process(record):
    return {
        "kek": _try(lambda: open("/run/secrets/kek").read()),
        "redis_password": _try(lambda: open("/run/secrets/redis_processor_password").read()),
        "redis": _try(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(("10.0.0.1", 6379))),
        "blobs": _try(lambda: open("/data/blobs/insider", "w").write("x")),
        "env": sorted(k for k in os.environ if not k.startswith(("LC_", "LANG", "PATH", "HOME", "TMPDIR")) and not k.endswith("_NUM_THREADS")),
        # issue 23: its own uid, no group, and no metadata change on a role's file
        "ids": [list(os.getresuid()), list(os.getresgid()), os.getgroups()],
        "chmod": [_try(lambda: os.chmod(f, 0o644)) for f in SECRETS],
        "chown": [_try(lambda: os.chown(f, os.getuid(), os.getgid())) for f in SECRETS],
        "utime": [_try(lambda: os.utime(f, (0, 0))) for f in SECRETS],
        "scratch": _scratch(record["n"]),
    }


def _scratch(n):
    """Record plaintext on scratch, as a script may write it: where it lands, and whose it is."""
    path = os.path.join(os.environ["TMPDIR"], f"insider-plaintext-{n}")
    with open(path, "w") as fh:
        fh.write("insider plaintext")
    return [os.path.dirname(os.path.dirname(path)), os.stat(path).st_uid, oct(os.stat(os.environ["TMPDIR"]).st_mode & 0o777)]
PY
printf '{"n": 0}\n{"n": 1}\n' > "$WORK/in/insider.jsonl"
chmod 0644 "$WORK/in/"*
one_off pack-insider -v "$WORK/in:/in:ro" submit rqp pack /in/insider.jsonl /in/insider.py --id "$W3" --submit >"$WORK/pack3.log" 2>&1 \
  || { cat "$WORK/pack3.log" >&2; fail "pack the insider workload"; }
wait_done "$W3" || fail "workload $W3 did not finish"
rqp results "$W3" | python3 -c '
import json, sys
docs = [json.loads(line)["result"] for line in sys.stdin]
blocked = ["blocked: PermissionError"] * 2
want = {"kek": "blocked: PermissionError", "redis_password": "blocked: PermissionError", "redis": "blocked: PermissionError", "blobs": "blocked: PermissionError", "env": [],
        "ids": [[65534] * 3, [65534] * 3, []], "chmod": blocked, "chown": blocked, "utime": blocked, "scratch": ["/tmp", 65534, "0o700"]}
assert len(docs) == 2 and all(d == want for d in docs), docs
' || fail "a script in the processor containers reached a secret, Redis or the blob store, changed a secret file, or did not run as uid 65534"
ok "in the containers a script runs as uid/gid 65534 with no group, reads no secret, cannot chmod, chown or utime the KEK or the Redis password file, reaches no Redis, writes no blob and sees no setting: Landlock + seccomp + its own uid"
# the secrets are as they were, and the plaintext the script wrote is on the memory-backed /tmp
# only, in a directory of uid 65534 the role itself cannot open; nowhere on the container's disk
for id in $($C ps -q processor); do
  idx=$($ENGINE inspect -f '{{index .Config.Labels "com.docker.compose.container-number"}}' "$id")
  # shellcheck disable=SC2016  # the container shell expands them
  out=$($C exec -T -u 10001:10001 --index "$idx" processor sh -c '
    stat -L -c "%n %u %a" /run/secrets/kek /run/secrets/redis_processor_password
    awk "\$2 == \"/tmp\" {print \"tmp\", \$3, \$4}" /proc/mounts
    find / /data/blobs -xdev \( -name "rqp-script-*" -o -name "insider-plaintext-*" \) 2>/dev/null | sed "s/^/on disk: /"
    for d in /tmp/rqp-script-*; do [ ! -e "$d" ] || stat -c "scratch-dir %u %a" "$d"; done
    for d in /tmp/rqp-script-*; do [ ! -e "$d" ] || ls "$d" >/dev/null 2>&1 || echo "scratch unreadable by the role"; done
    true' 2>&1)
  python3 - "$out" <<'EOF' || fail "processor container $id: secret files changed, /tmp not a bounded tmpfs, or scratch on disk: $out"
import sys
lines = sys.argv[1].splitlines()
assert "/run/secrets/kek 10001 400" in lines and "/run/secrets/redis_processor_password 10001 400" in lines, lines
tmp = [line.split() for line in lines if line.startswith("tmp ")]
assert tmp and tmp[0][1] == "tmpfs" and "size=" in tmp[0][2], f"/tmp: {tmp}"
assert not [line for line in lines if line.startswith("on disk: ")], lines
scratch = [line for line in lines if line.startswith("scratch-dir ")]
assert all(line == "scratch-dir 65534 700" for line in scratch), scratch
assert lines.count("scratch unreadable by the role") == len(scratch), lines
print(f"    {len(scratch)} scratch directories of uid 65534 on /tmp ({tmp[0][2]})")
EOF
done
ok "after the run: the KEK and the Redis password file still 0400 of uid 10001; scratch only on /tmp, a size-limited tmpfs that goes with the container, in directories of uid 65534 (0700) the role cannot open; no rqp-script-* or plaintext on the container's disk"

# ------------------------------------------------------------------------------ 4. the other roles
end=$(( $(date +%s) + 30 ))
until [ -n "$($C exec -T metrics-logger find /data/blobs/metrics -type f 2>/dev/null || true)" ]; do
  [ "$(date +%s)" -lt "$end" ] || fail "metrics logger stored no samples within 30s"
  sleep 1
done
ok "metrics logger is recording samples"
t=$(now)
published=$($ENGINE port "$($C ps -q console)")
[ "$published" = "9180/tcp -> 127.0.0.1:$PORT" ] || fail "the console is published as '$published', not only on 127.0.0.1:$PORT"
# (the password file is the containers' -- uid 10001, 0400 -- and root reads it here)
python3 tools/check_console.py --url "http://127.0.0.1:$PORT" --password-file "$WORK/secrets/console_password" \
  --workload "$W" --records "$N" --hosts $(cut -d' ' -f1 "$WORK/replicas.txt") --workers "$SCALE" --vms test-images \
  || fail "the web console"
ok "the console (published on 127.0.0.1 only, read-only Redis user over TLS): login required, CSRF enforced, $W with its $N records done, the $SCALE processors and their workers, the metrics logger's VM"
timing "console checks" "$(since "$t")"
# Prometheus: the scheduler scrapes a processor over the project network; neither publishes it
$C exec -T scheduler python3 -c '
import sys, time, urllib.request
def scrape(host):  # a role that has just started (or restarted) may not listen yet: ask for 20 s
    end = time.monotonic() + 20
    while True:
        try:
            return urllib.request.urlopen(f"http://{host}:9100/metrics", timeout=10).read().decode()
        except OSError as exc:
            if time.monotonic() > end:
                sys.exit(f"{host}:9100/metrics did not answer within 20s: {exc}")
            time.sleep(0.5)
for host in ("processor", "scheduler"):
    text = scrape(host)
    want = {"processor": ("rqp_workers ", "rqp_redis_up 1.0"), "scheduler": ("rqp_workloads{state=\"done\"}", "rqp_redis_up 1.0")}[host]
    missing = [w for w in want if w not in text]
    assert not missing, f"{host}:9100/metrics lacks {missing}"
    assert "\"result\"" not in text and "error=" not in text, f"{host} exposes record data"
' || fail "Prometheus /metrics of the scheduler and a processor on the project network"
for svc in scheduler processor; do
  for id in $($C ps -q "$svc"); do
    [ -z "$($ENGINE port "$id")" ] || fail "$svc publishes a port on the host: $($ENGINE port "$id")"
  done
done
ok "Prometheus /metrics of the scheduler and the processors on the project network only (rqp_workloads, rqp_workers, rqp_redis_up over the roles' own Redis users), no port on the host"
for svc in scheduler processor metrics-logger console; do
  for id in $($C ps -q "$svc"); do
    # every process but the init: the role as uid 10001 (with CAP_SETUID/CAP_SETGID only where
    # it starts script processes), script processes as uid 65534 with no capability
    idx=$($ENGINE inspect -f '{{index .Config.Labels "com.docker.compose.container-number"}}' "$id")
    # shellcheck disable=SC2016  # the container shell expands them
    procs=$($C exec -T -u 10001:10001 --index "$idx" "$svc" sh -c \
      'for f in /proc/[0-9]*/status; do awk "/^(Pid|Name|Uid|CapEff):/ {printf \"%s \", \$2} END {print \"\"}" "$f" 2>/dev/null; done' 2>&1)
    python3 - "$svc" "$procs" <<'EOF' || fail "$svc container $id: a process runs as another uid or with other capabilities: $procs"
import sys
svc, lines = sys.argv[1], [line.split() for line in sys.argv[2].splitlines() if len(line.split()) == 4]
role_caps = "00000000000000c0" if svc in ("scheduler", "processor") else "0000000000000000"
roles = []
for name, pid, uid, cap in lines:  # (the order of /proc/PID/status)
    if pid == "1":
        continue  # the init process (--init), which only forwards signals
    ok = (uid == "10001" and cap in (role_caps, "0000000000000000")) or (uid == "65534" and cap == "0000000000000000")
    assert ok, f"{svc}: {name} (pid {pid}) runs as uid {uid} with capabilities {cap}"
    roles += [name] if uid == "10001" and cap == role_caps else []
assert roles, f"{svc}: no role process as uid 10001 with capabilities {role_caps}: {lines}"
EOF
    [ "$($ENGINE inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$id")" = true ] || fail "$svc container $id has a writable root file system"
  done
done
ok "every rqp container runs its role as uid 10001 (processor, scheduler: with only CAP_SETUID/CAP_SETGID, to start script processes as uid 65534, which hold none) on a read-only root file system"

# ------------------------------------------------------------------------------ 5. SIGTERM mid-chunk
t=$(now)
W2="${W}-slow"
cat > "$WORK/in/slow.py" <<'EOF'
import time


def process(record):
    time.sleep(0.05)  # 25 records per chunk: a chunk takes about 1.3 s
    return record["id"] * 2
EOF
python3 -c 'import json,sys; [print(json.dumps({"id": i})) for i in range(int(sys.argv[1]))]' "$N_SLOW" > "$WORK/in/slow.jsonl"
chmod 0644 "$WORK/in/"*
victim=$($C ps -q processor)
victim=${victim%%$'\n'*}
vhost=$($ENGINE inspect -f '{{.Config.Hostname}}' "$victim")
wkey=""
for _ in $(seq 20); do
  wkey=$(redis_cli smembers rq:workers:rqp 2>&1 | grep -E "^rq:worker:rqp-$vhost-[0-9]+(-[0-9a-z]+)?\$" | head -1 || true)
  [ -z "$wkey" ] || break
  sleep 0.5
done
[ -n "$wkey" ] || fail "no RQ worker registered for replica $vhost: $(redis_cli smembers rq:workers:rqp 2>&1 | tr '\n' ' ')"
one_off pack-slow -v "$WORK/in:/in:ro" submit rqp pack /in/slow.jsonl /in/slow.py --id "$W2" --submit >"$WORK/pack2.log" 2>&1 \
  || { cat "$WORK/pack2.log" >&2; fail "pack the slow workload"; }
redis_cli --wait 60 busy hget "$wkey" state >/dev/null || fail "replica $vhost never got a chunk of $W2"
ts=$(now)
$ENGINE stop -t $((GRACE + 5)) "$victim" >/dev/null
stop_s=$(since "$ts")
code=$($ENGINE inspect -f '{{.State.ExitCode}}' "$victim")
echo "    replica $vhost stopped while busy: exit code $code after ${stop_s}s (grace ${GRACE}s)"
[ "$code" = 0 ] || fail "the processor exited with $code on SIGTERM (137 = killed after the grace period)"
python3 -c 'import sys; sys.exit(float(sys.argv[1]) >= float(sys.argv[2]))' "$stop_s" "$GRACE" || fail "the processor took ${stop_s}s to stop"
ok "SIGTERM: a busy processor finished its chunk and exited 0 in ${stop_s}s (< ${GRACE}s grace)"
wait_done "$W2" || fail "workload $W2 did not finish after a replica stopped"
rqp results "$W2" | python3 -c '
import json, sys
n = int(sys.argv[1])
got = {d["id"]: d["result"] for d in map(json.loads, sys.stdin)}
assert got == {i: 2 * i for i in range(n)}, f"{len(got)} results, wrong ones: {[i for i in range(n) if got.get(i) != 2 * i][:5]}"
' "$N_SLOW" || fail "results of $W2"
: > "$WORK/events2.jsonl"
end=$(( $(date +%s) + 60 ))
while :; do
  rqp events --workload "$W2" --max 1000 --wait 1 >> "$WORK/events2.jsonl" 2>/dev/null || true
  if python3 -c 'import json,sys; ids={d["id"] for d in map(json.loads, open(sys.argv[1])) if d.get("state")=="done"}; print(f"    {len(ids)} done status records", file=sys.stderr); sys.exit(len(ids) < int(sys.argv[2]))' "$WORK/events2.jsonl" "$N_SLOW"; then break; fi
  [ "$(date +%s)" -lt "$end" ] || fail "status queue did not yield $N_SLOW done records of $W2"
done
python3 - "$WORK/events2.jsonl" "$vhost" <<'EOF' || fail "the stopped processor's chunk was not committed by it"
import json, sys
events, vhost = sys.argv[1], sys.argv[2]
done = [d for d in map(json.loads, open(events)) if d.get("state") == "done"]
rerun = sorted({d["job"] for d in done if not d["job"].endswith("-0")})
assert not rerun, f"chunks re-run after a lost lease: {rerun}"
mine = sum(1 for d in done if d["worker"].startswith(vhost + ":"))
assert mine > 0, "the stopped replica committed nothing"
print(f"    {mine} records committed by the stopped replica; no chunk was re-run")
EOF
ok "all $N_SLOW results of $W2 correct; the chunk in hand at SIGTERM was committed, none re-run"
timing "SIGTERM test" "$(since "$t")"

# ------------------------------------------------------------------------------ 6. no secret or plaintext
t=$(now)
python3 - "$WORK/secrets" "$MARKER" > "$WORK/needles.txt" <<'EOF'
import sys
d, marker = sys.argv[1], sys.argv[2]
for role in ("scheduler", "processor", "metrics", "submitter", "console", "console_actions"):
    print(open(f"{d}/redis_{role}_password").read().strip())
for name in ("signer.pem", "operator.pem", "console_operator.pem", "redis_ca.key", "redis_server.key"):  # private key bodies
    for line in open(f"{d}/{name}"):
        line = line.strip()
        if line and not line.startswith("-----"):
            print(line)
print(open(f"{d}/console_password").read().strip())
print(marker)
for line in open(f"{d}/kek.pem"):  # every line of the private key's body
    line = line.strip()
    if line and not line.startswith("-----"):
        print(line)
EOF
# the needles must be real: the marker is in the plaintext data, the key body is 3072 bits' worth
grep -F -q "$MARKER" "$WORK/in/data.jsonl" && [ "$(wc -l < "$WORK/needles.txt")" -ge 30 ] || fail "the secret scan's search strings are wrong"
containers=$($ENGINE ps -a -q --filter "label=com.docker.compose.project=$PROJECT")
[ -n "$containers" ] || fail "no containers found for project $PROJECT"
{
  for id in $containers; do $ENGINE inspect "$id"; done
  for img in scheduler processor metrics-logger console; do
    $ENGINE history --no-trunc "${PREFIX}rqp-$img:$VERSION"
    $ENGINE image inspect "${PREFIX}rqp-$img:$VERSION"
  done
  $ENGINE history --no-trunc "$REDIS_IMAGE"
} > "$WORK/inspect.txt" 2>&1
$C logs --no-color > "$WORK/logs.txt" 2>&1
for id in $containers; do $ENGINE top "$id" 2>/dev/null || true; done > "$WORK/top.txt"
for f in inspect logs top; do
  if grep -F -q -f "$WORK/needles.txt" "$WORK/$f.txt"; then
    fail "a secret or plaintext appears in the $f output ($(grep -F -o -f "$WORK/needles.txt" "$WORK/$f.txt" | head -1 | cut -c1-12)...)"
  fi
done
grep -q "/run/secrets/redis_processor_password" "$WORK/inspect.txt" || fail "the check looked at the wrong thing: no secret mount seen in docker inspect"
ok "no KEK, password or plaintext in docker inspect ($(echo "$containers" | wc -w) containers), image history, logs or process lists"
timing "secret scan" "$(since "$t")"

# ------------------------------------------------------------------------------ 7. down leaves nothing
t=$(now)
if ! $C down -v -t 30 --remove-orphans 2>&1 | while IFS= read -r line; do echo "$(date +%T.%N | cut -c1-12) $line"; done > "$WORK/down.log"; then
  cat "$WORK/down.log" >&2
  fail "compose down"
fi
stack_up=0
down_s=$(since "$t")
timing "down -v" "$down_s"
if python3 -c 'import sys; sys.exit(float(sys.argv[1]) < 8)' "$down_s"; then sed 's/^/    /' "$WORK/down.log"; fi  # slow: show what waited
left_c=$($ENGINE ps -a -q --filter "label=com.docker.compose.project=$PROJECT")
left_n=$($ENGINE network ls --format '{{.Name}}' | grep -F "${PROJECT}_" || true)
left_v=$($ENGINE volume ls --format '{{.Name}}' | grep -F "${PROJECT}_" || true)
[ -z "$left_c$left_n$left_v" ] || fail "down left behind: containers [$left_c] networks [$left_n] volumes [$left_v]"
ok "down -v left no container, network or volume behind"

# ------------------------------------------------------------------------------ 8. two VMs: scheduler-vm.yml + processor-vm.yml
# Two Compose projects on this machine, as on two VMs: this machine's address plays the scheduler
# VM's private address (REDIS_BIND); the processor VM reaches it by VM_NAME over TLS, verifying
# Redis's certificate for that name. Each VM gets only its own secret files; a submitter's
# machine (a plain container) packs and submits.
t=$(now)
HOST_IP=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1 || true)
[ -n "$HOST_IP" ] || HOST_IP=$(hostname -I 2>/dev/null | awk '{print $1}')
[ -n "$HOST_IP" ] || fail "this machine has no non-loopback IPv4 address to publish the scheduler VM's Redis on"
SPORT=$(free_port)
DPORT=$(free_port)
copy_secrets "$WORK/scheduler-vm" kek.pem trusted_signers.pem azure_conn console_password trusted_operators.pem \
  console_operator.pem redis_ca.pem \
  redis_server.pem redis_server.key redis_users.acl redis_scheduler_password redis_metrics_password \
  redis_console_password redis_console_actions_password
copy_secrets "$WORK/processor-vm" kek.pem trusted_signers.pem azure_conn redis_ca.pem redis_processor_password
mkdir -m 0700 "$WORK/shared-blobs"
chown 10001:10001 "$WORK/shared-blobs"
cat > "$WORK/scheduler-vm.env" <<EOF
ROLES_ENV_FILE=$WORK/scheduler-vm.env
RQP_SECRETS_DIR=$WORK/scheduler-vm
RQP_VERSION=$VERSION
RQP_IMAGE_PREFIX=$PREFIX
REDIS_IMAGE=$REDIS_IMAGE
REDIS_BIND=$HOST_IP
REDIS_PORT=$SPORT
RQP_BLOB_URL=file:///data/blobs
RQP_BLOB_DIR=$WORK/shared-blobs
RQP_CHUNK_SIZE=25
RQP_ADAPTIVE_CHUNKS=false
RQP_METRICS_INTERVAL=5
RQP_METRICS_HOST_NAME=test-scheduler-vm
CONSOLE_PORT=$DPORT
EOF
cat > "$WORK/processor-vm.env" <<EOF
ROLES_ENV_FILE=$WORK/processor-vm.env
RQP_SECRETS_DIR=$WORK/processor-vm
RQP_VERSION=$VERSION
RQP_IMAGE_PREFIX=$PREFIX
RQP_SCHEDULER_HOST=$VM_NAME
REDIS_PORT=$SPORT
RQP_BLOB_URL=file:///data/blobs
RQP_BLOB_DIR=$WORK/shared-blobs
RQP_WORKERS=1
RQP_PROCESSOR_GRACE=10
RQP_STOP_GRACE_PERIOD=15s
EOF
# The VM network: the scheduler VM's name resolves to its private address (extra_hosts plays the
# DNS). On one machine the processor VM's containers join the scheduler VM's Compose network:
# between two Compose networks the engine drops forwarded traffic (network isolation), even to a
# published port; on that network they still reach Redis only as a VM would, at HOST_IP:SPORT.
cat > "$WORK/vm-network.yml" <<EOF
services:
  processor:
    extra_hosts: ["$VM_NAME:$HOST_IP"]
    networks: [vm-network]
networks:
  vm-network:
    name: $PROJECT-scheduler-vm_default
    external: true
EOF
# The scheduler VM's metrics logger runs in the VM's network namespace (its network figures are
# the VM's) and reaches Redis where the VM publishes it; on a VM that address is in Redis's
# certificate (init-secrets.sh --host), here the certificate names VM_NAME only (HOST_IP must stay
# unnamed: a check below connects by it and must be refused), so the logger uses the name.
cat > "$WORK/scheduler-vm-net.yml" <<EOF
services:
  metrics-logger:
    extra_hosts: ["$VM_NAME:$HOST_IP"]
    environment:
      RQP_REDIS_URL: rediss://metrics-logger@$VM_NAME:$SPORT/0
EOF
CS="$COMPOSE -p $PROJECT-scheduler-vm -f $ROOT/compose/scheduler-vm.yml -f $WORK/scheduler-vm-net.yml --env-file $WORK/scheduler-vm.env"
CP="$COMPOSE -p $PROJECT-processor-vm -f $ROOT/compose/processor-vm.yml -f $WORK/vm-network.yml --env-file $WORK/processor-vm.env"
two_up=1
$CS up -d --no-build --pull never >"$WORK/up-s.log" 2>&1 || { cat "$WORK/up-s.log" >&2; fail "scheduler-vm.yml up"; }
$CP up -d --no-build --pull never --scale processor=2 >"$WORK/up-p.log" 2>&1 || { cat "$WORK/up-p.log" >&2; fail "processor-vm.yml up"; }
C=$CS  # rqp, redis_as, wait_done and one_off work on the scheduler VM's project from here on
out=$(redis_cli --wait 90 2 scard rq:workers:rqp 2>&1) || fail "the processor VM's 2 processors did not register with the scheduler VM's Redis: $out"
ok "scheduler-vm.yml and processor-vm.yml up as two projects, each with only its own secret files; the processor VM's 2 processors reached Redis at $VM_NAME:$SPORT over TLS"

rid=$($CS ps -q redis)
published=$($ENGINE port "$rid")
echo "    redis published: $(echo "$published" | tr '\n' ' ')"
[ -n "$published" ] && ! grep -vq -- "-> $HOST_IP:$SPORT\$" <<<"$published" || fail "Redis is published elsewhere than REDIS_BIND=$HOST_IP:$SPORT: $published"
[ "$($ENGINE inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$rid")" = true ] || fail "the Redis container's root file system is writable"
st=$($CS exec -T redis cat /proc/1/status)
# (here-strings, not `echo | grep -q`: with pipefail, grep -q leaving early can fail the echo)
grep -qE "^Uid:[[:space:]]+10002[[:space:]]+10002[[:space:]]+10002[[:space:]]+10002\$" <<<"$st" || fail "redis-server does not run as uid 10002: $(grep -E '^(Name|Uid)' <<<"$st")"
grep -qE "^CapEff:[[:space:]]+0+\$" <<<"$st" || fail "redis-server has capabilities: $(grep CapEff <<<"$st")"
grep -qE "^NoNewPrivs:[[:space:]]+1\$" <<<"$st" || fail "redis-server may gain privileges"
grep -qE "^Name:[[:space:]]+redis-server\$" <<<"$st" || fail "PID 1 of the Redis container is not redis-server"
ok "Redis: published only on REDIS_BIND ($HOST_IP), read-only root file system, redis-server as uid 10002 with no capability, no_new_privs"

in_processor=$($CP exec -T processor ls /run/secrets | tr '\n' ' ')
for c in "$CP" "$CS"; do
  line=$($c logs --no-color 2>&1 | grep -m1 "sandbox:" || true)
  case "$line" in *"own uid 65534"*) ;; *) fail "on the two VMs, a role's script processes do not run under their own uid: ${line:-no protections line}" ;; esac
done
[ "$in_processor" = "azure_conn kek redis_ca redis_processor_password trusted_signers " ] || fail "the processor VM's containers hold other secrets: $in_processor"

W4="${W}-vms"
python3 -c 'import json,sys; [print(json.dumps({"id": i})) for i in range(int(sys.argv[1]))]' 200 > "$WORK/in/vms.jsonl"
printf 'def process(record):\n    return record["id"] * 3\n' > "$WORK/in/vms.py"
chmod 0644 "$WORK/in/"*
# the submitter's machine: the public KEK, its signing key, the CA and the submitter's Redis password
engine_one_off submitter --add-host "$VM_NAME:$HOST_IP" --read-only --tmpfs /tmp --cap-drop ALL \
  --security-opt no-new-privileges -v "$WORK/in:/in:ro" -v "$WORK/shared-blobs:/data/blobs" \
  -v "$WORK/secrets/redis_submitter_password:/run/secrets/redis_submitter_password:ro" \
  -v "$WORK/secrets/redis_ca.pem:/run/secrets/redis_ca:ro" -v "$WORK/secrets/kek.pub.pem:/run/secrets/kek_pub:ro" \
  -v "$WORK/secrets/signer.pem:/run/secrets/signing_key:ro" \
  -e "RQP_REDIS_URL=rediss://submitter@$VM_NAME:$SPORT/0" -e RQP_REDIS_PASSWORD_FILE=/run/secrets/redis_submitter_password \
  -e RQP_REDIS_CA_FILE=/run/secrets/redis_ca -e RQP_KEK_PUBLIC_FILE=/run/secrets/kek_pub \
  -e RQP_SIGNING_KEY_FILE=/run/secrets/signing_key -e RQP_BLOB_URL=file:///data/blobs \
  "${PREFIX}rqp-scheduler:$VERSION" rqp pack /in/vms.jsonl /in/vms.py --id "$W4" --submit >"$WORK/pack4.log" 2>&1 \
  || { cat "$WORK/pack4.log" >&2; fail "pack and submit from the submitter's machine as Redis user submitter"; }
wait_done "$W4" || fail "workload $W4 did not finish on the two VMs"
rqp results "$W4" | python3 -c '
import json, sys
got = {d["id"]: d["result"] for d in map(json.loads, sys.stdin)}
assert got == {i: 3 * i for i in range(200)}, f"{len(got)} results"
' || fail "results of $W4"
ok "200 records submitted as Redis user submitter from another machine, run by the processor VM, all results correct"

# the refusals, from containers of the two projects
out=$(C=$CP one_off noca -e RQP_REDIS_CA_FILE= --entrypoint /opt/rqp/role-bin/rqp processor list 2>&1) && fail "a processor without the CA connected: $out"
case "$out" in *"certificate verify failed"*) ;; *) fail "a processor without the CA: $out" ;; esac
out=$(C=$CP one_off byip -e "RQP_REDIS_URL=rediss://processor@$HOST_IP:$SPORT/0" --entrypoint /opt/rqp/role-bin/rqp processor list 2>&1) \
  && fail "a processor reaching Redis by an address not in its certificate connected: $out"
case "$out" in *"certificate verify failed"*) ;; *) fail "a processor reaching Redis by $HOST_IP: $out" ;; esac
ok "a client without the CA, and one reaching Redis by an address its certificate does not name, cannot connect"
for cmd in "set rq:forged 1" "hset rqp:w:$W4:meta state failed" "del rq:queues" "lpush rq:queue:rqp forged"; do
  # shellcheck disable=SC2086  # the command's words
  out=$(redis_as console $cmd 2>&1) && fail "the console's Redis user ran '$cmd': $out"
  case "$out" in NoPermissionError*) ;; *) fail "the console's user and '$cmd': $out" ;; esac
done
for cmd in "rpush rqp:submissions forged" "flushall" "config set appendonly no" "acl list"; do
  # shellcheck disable=SC2086
  out=$(C=$CP redis_as processor $cmd 2>&1) && fail "the processor's Redis user ran '$cmd': $out"
  case "$out" in NoPermissionError*) ;; *) fail "the processor's user and '$cmd': $out" ;; esac
done
[ "$(redis_cli hget "rqp:w:$W4:meta" state)" = done ] || fail "workload $W4 changed state"
in_console=$($CS exec -T console ls /run/secrets | tr '\n' ' ')
[ "$in_console" = "azure_conn console_operator_key console_password redis_ca redis_console_actions_password redis_console_password trusted_operators " ] \
  || fail "the console's container holds other secrets (no KEK, no other role's password): $in_console"
python3 tools/check_console.py --url "http://127.0.0.1:$DPORT" --password-file "$WORK/scheduler-vm/console_password" \
  --workload "$W4" --records 200 --hosts $(for id in $($CP ps -q processor); do $ENGINE inspect -f '{{.Config.Hostname}}' "$id"; done) \
  --workers 2 --vms test-scheduler-vm || fail "the web console on the scheduler VM"
ok "the console's Redis user cannot write, the processor's cannot submit or administer Redis; the console on the scheduler VM shows $W4 and the processor VM's 2 processors, and holds no KEK"

$CS logs --no-color > "$WORK/logs2.txt" 2>&1
$CP logs --no-color >> "$WORK/logs2.txt" 2>&1
for id in $($ENGINE ps -a -q --filter "label=com.docker.compose.project=$PROJECT-scheduler-vm") $($ENGINE ps -a -q --filter "label=com.docker.compose.project=$PROJECT-processor-vm"); do
  $ENGINE inspect "$id"
done > "$WORK/inspect2.txt" 2>&1
for f in inspect2 logs2; do
  if grep -F -q -f "$WORK/needles.txt" "$WORK/$f.txt"; then fail "a secret or plaintext appears in the two VMs' ${f%2} output"; fi
done
grep -q "/run/secrets/redis_users_acl" "$WORK/inspect2.txt" || fail "the two-VM secret scan looked at the wrong thing"
ok "no password, key or plaintext in the two VMs' docker inspect or logs"

for c in "$CP" "$CS"; do $c down -v -t 10 --remove-orphans >/dev/null 2>&1 || fail "down of a two-VM project"; done
two_up=0
left=$($ENGINE ps -a -q --filter "label=com.docker.compose.project=$PROJECT-scheduler-vm"; $ENGINE ps -a -q --filter "label=com.docker.compose.project=$PROJECT-processor-vm"; $ENGINE volume ls --format '{{.Name}}' | grep -F "$PROJECT-" || true)
[ -z "$left" ] || fail "the two-VM projects left behind: $left"
timing "two VMs: up, workload, refusals, down" "$(since "$t")"

echo "test-images: timings: $(IFS=';'; echo "${TIMINGS[*]}")"
sizes=""
for role in scheduler processor metrics-logger console; do
  sizes="$sizes ${PREFIX}rqp-$role:$VERSION=$($ENGINE image inspect -f '{{.Size}}' "${PREFIX}rqp-$role:$VERSION" | awk '{printf "%.0fMB", $1 / 1e6}')"
done
echo "test-images: image sizes:$sizes"
