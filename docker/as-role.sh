#!/bin/sh
# as-role -- how the processor and scheduler images start their programs (installed as
# /opt/rqp/role-bin/as-role; rqp, rqp-scheduler, rqp-processor, python and python3 there are
# links to it, first on PATH): run /opt/rqp/bin/<the name it was called by> as the role's uid.
#
# * Started as uid 10001 (the image's USER; `docker run` without --user): the program runs as it
#   is, and its script processes keep uid 10001 (the allowlist alone holds; the role says so).
# * Started as root with CAP_SETUID and CAP_SETGID (compose/: `user: "0:0"`, `cap_drop: [ALL]`,
#   `cap_add: [SETUID, SETGID]`): the program runs as uid/gid 10001, owner of the role's files,
#   keeping just those two capabilities as ambient ones, so it can start each script process
#   under RQP_SANDBOX_UID (65534), which owns nothing; the script process drops them too.
#   `docker compose exec scheduler rqp ...` goes through here as well: never root.
# * Started as root with CAP_DAC_OVERRIDE (the engine's default capabilities, `--user 0:0`: an
#   administrator's one-off container such as compose/init-secrets.sh's): runs as it is.
# * Started as root without CAP_SETUID and CAP_SETGID: refused, with the fix.
set -eu
name=${0##*/}
prog=/opt/rqp/bin/$name
[ "$name" != as-role ] || { echo "as-role: call it through one of its links (rqp, rqp-processor, ...)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || exec "$prog" "$@"
eff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
[ $((0x$eff & 0x2)) -eq 0 ] || exec "$prog" "$@"
if [ $((0x$eff & 0xc0)) -ne $((0xc0)) ]; then
  echo "$name: started as root without CAP_SETUID and CAP_SETGID: give the container cap_add: [SETUID, SETGID] (as compose/ does), or run it as the role's uid (user: \"10001:10001\"; scripts then keep that uid)" >&2
  exit 1
fi
exec setpriv --reuid=10001 --regid=10001 --init-groups \
  --inh-caps=-all,+setuid,+setgid --ambient-caps=-all,+setuid,+setgid -- "$prog" "$@"
