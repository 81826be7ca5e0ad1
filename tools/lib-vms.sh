# shellcheck shell=bash
# lib-vms.sh -- the "VM" machinery tools/test-vms.sh and tools/test-vms-ha.sh share, sourced by
# both (after tools/lib.sh) from the repository's top directory. A VM is a network namespace with
# one NIC on a LAN bridge and its own podman engine (own store, networks and DNS server).
#
# The sourcing script defines, before it calls these:
#   RUN, WORK, ID, T0   run directory (engine sockets), scratch directory, run id, start time
#   BR, HOSTIP          the LAN bridge and this machine's address on it (the VMs' default route)
#   VM_IP, VM_PID       associative arrays: each VM's address; its engine's pid (filled here)
#   ns VM, nic VM       functions: the VM's namespace name; its NIC's name on the LAN side
#   TW, TIMELINE        optional: the timeline's zero (else T0) and the array mark appends to
#   VM_ENGINE_ENV       optional: VAR=value words the engine is started with (e.g. a registries.conf)

mark() {  # mark TEXT: a line of the timeline, at seconds since the workload was submitted
  local at; at=$(since "${TW:-$T0}")
  TIMELINE+=("$(printf '%7ss  %s' "+$at" "$*")")
  echo "    [timeline +${at}s] $*"
}

field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, d))' "$1" "$2"; }

vm_sock() { echo "$RUN/$1.sock"; }
vmd() { local vm=$1; shift; DOCKER_HOST=unix://$(vm_sock "$vm") docker "$@"; }   # the VM's engine

add_vm() {  # the VM's namespace, its NIC on the LAN, its default route through this machine
  local vm=$1 ip=${VM_IP[$1]}
  ip netns add "$(ns "$vm")"
  ip link add "$(nic "$vm")" type veth peer name eth0 netns "$(ns "$vm")"
  ip -n "$(ns "$vm")" link set lo up
  ip -n "$(ns "$vm")" addr add "$ip/24" dev eth0
  ip -n "$(ns "$vm")" link set eth0 up
  ip -n "$(ns "$vm")" route add default via "$HOSTIP"
  ip link set "$(nic "$vm")" master "$BR" up
}

start_engine() {  # a podman service inside the VM's namespace: its own store, networks, DNS
  local vm=$1 d=$WORK/vm/$1
  mkdir -p "$d/storage" "$d/networks" "$RUN/$vm" "$RUN/$vm-tmp"
  # netavark keeps one aardvark-dns per run directory, /run/containers/networks for every rootful
  # podman: an engine sharing it would only signal a DNS server living in another namespace (the
  # host's, or a killed VM's) and its containers could not resolve each other. Each VM engine
  # gets its own, bind-mounted in a private mount namespace: its own DNS server in its own network.
  mkdir -p "$d/netrun"
  # shellcheck disable=SC2086  # VM_ENGINE_ENV is words by design
  env ${VM_ENGINE_ENV:-} nsenter --net="/run/netns/$(ns "$vm")" unshare --mount --propagation private \
    sh -c 'mkdir -p /run/containers/networks && mount --bind "$1" /run/containers/networks && shift && exec "$@"' sh "$d/netrun" \
    podman --root "$d/storage" --runroot "$RUN/$vm" --tmpdir "$RUN/$vm-tmp" --network-config-dir "$d/networks" \
    system service --time=0 "unix://$(vm_sock "$vm")" >"$d/engine.log" 2>&1 &
  VM_PID[$vm]=$!
  local end=$(( $(date +%s) + 30 ))
  until vmd "$vm" version >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || { cat "$d/engine.log" >&2; fail "the engine of VM $vm did not start"; }
    sleep 0.1
  done
}

kill_vm() {  # the VM dies whole: its engine, every container process (conmon included), nothing restarts
  local vm=$1 ids id f
  # the containers' own processes live in their own network namespaces (not the VM's) and are
  # re-parented when conmon dies: found through their cgroups, named by the engine while it lives
  ids=$(vmd "$vm" ps -q --no-trunc 2>/dev/null || true)
  if [ -n "${VM_PID[$vm]:-}" ]; then
    kill -9 "${VM_PID[$vm]}" 2>/dev/null || true
    wait "${VM_PID[$vm]}" 2>/dev/null || true
    VM_PID[$vm]=""
  fi
  for p in $(pgrep -f -- "--root $WORK/vm/$vm/storage" 2>/dev/null || true); do kill -9 "$p" 2>/dev/null || true; done
  for id in $ids; do
    for f in /sys/fs/cgroup/pids/libpod_parent/libpod-"$id"/cgroup.procs /sys/fs/cgroup/libpod_parent/libpod-"$id"/cgroup.procs; do
      if [ -f "$f" ]; then xargs -r kill -9 <"$f" 2>/dev/null || true; fi
    done
  done
  ip netns pids "$(ns "$vm")" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
}

cleanup_vm() {  # kill_vm, then what the VM left on this machine: its mounts, NIC and namespace
  local vm=$1
  kill_vm "$vm"
  grep -F " $WORK/vm/$vm/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  ip link del "$(nic "$vm")" 2>/dev/null || true
  ip netns del "$(ns "$vm")" 2>/dev/null || true
}

write_workload_inputs() {  # write_workload_inputs DIR N SLEEP: N JSON records and a process() sleeping SLEEP s each
  local dir=$1 n=$2 sleep_s=$3
  mkdir -p "$dir"
  python3 -c '
import json, sys
with open(sys.argv[2], "w") as f:
    for i in range(int(sys.argv[1])):
        f.write(json.dumps({"n": i, "memo": f"record {i}"}) + "\n")' "$n" "$dir/data.jsonl"
  cat > "$dir/process.py" <<PY
import time


def process(record):
    time.sleep($sleep_s)
    return {"n": record["n"], "v": (record["n"] * 7919) % 1000003}
PY
  chmod 0755 "$dir"; chmod 0644 "$dir/"*
}
