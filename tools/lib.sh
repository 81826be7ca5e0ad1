# shellcheck shell=bash
# lib.sh -- what tools/test-images.sh and tools/test-vms.sh share, sourced by both from the
# repository's top directory: a TAP-like report (ok, fail), time stamps (now, since), one-off
# containers whose exit code can be trusted (run_once), and the documented copy of a VM's
# secret files (copy_secrets).
#
# The sourcing script sets, before it calls these:
#   passed=0 failed=0   the counts ok and fail keep (its teardown prints them)
#   T0                  when the run started ($(now)); ok prints the seconds since
#   WORK                its scratch directory; copy_secrets copies from $WORK/secrets

now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
ok() { passed=$((passed + 1)); echo "ok $passed - $* [at $(since "$T0")s]"; }
fail() {
  failed=$((failed + 1))
  echo "not ok - $*" >&2
  exit 1
}

run_once() {  # run_once ENGINE NAME COMMAND...: COMMAND, a `run` naming its container NAME, with a trustworthy exit code.
  # (Not --rm: with podman's Docker API, `run --rm` reports 0 even when the container failed; the
  # container's own exit code is read and the container removed right after instead.) ENGINE is
  # the engine command that sees the container, split into words: "docker", or "vmd scheduler".
  local engine=$1 name=$2 code=0; shift 2
  "$@" || code=$?
  [ "$code" = 0 ] || code=$($engine inspect -f '{{.State.ExitCode}}' "$name" 2>/dev/null || echo "$code")
  $engine rm -f "$name" >/dev/null 2>&1 || true
  return "$code"
}

copy_secrets() {  # copy_secrets DIR FILE...: the procedure compose/README.md documents, `ssh VM` left out.
  # DIR is made as on a VM (owned by the roles' user 10001, mode 0700); tar keeps each file's
  # owner and mode; `.complete` comes last (on a VM, cloud-init's rqp.path starts rqp when it appears).
  local dir=$1; shift
  install -d -o 10001 -g 10001 -m 0700 "$dir"
  (cd "$WORK/secrets" && tar --numeric-owner -cf - "$@") | tar --numeric-owner --same-owner -xpf - -C "$dir"
  touch "$dir/.complete"
}
