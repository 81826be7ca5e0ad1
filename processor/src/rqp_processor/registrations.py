"""Dead workers' RQ registrations on this host, found and removed.

A worker killed with its container (``docker compose kill``), its VM (a reboot) or by the OOM
killer never unregisters: its ``rq:worker:<name>`` hash lives on for RQ's worker TTL (minutes),
the console lists it as a worker all that while, and -- before names carried a start token --
the worker started next with the same pid died at once: "There exists an active worker named
'rqp-<host>-12' already". The supervisor removes them when it starts and whenever one of its
workers dies: a registration of this host whose start token is not that of a live process here
(``rqp.identity.start_token``) belongs to a process that is gone.

One processor per host name is assumed (Compose gives each container its own; processors that
share a host name share its processes, as on one machine): a registration of this host that no
process here matches is dead.
"""

from __future__ import annotations

import logging
import socket

import redis
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE
from rq.worker import Worker
from rq.worker_registration import REDIS_WORKER_KEYS, WORKERS_BY_QUEUE_KEY

from rqp.identity import parse_worker_name, start_token

__all__ = ["dead_registrations", "remove_dead_registrations"]

log = logging.getLogger("rqp.processor")


def _text(v: bytes | str) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else v


def dead_registrations(r: redis.Redis, host: str | None = None) -> list[str]:
    """Names of RQ workers registered for ``host`` (default: this one) whose process is gone."""
    host = socket.gethostname() if host is None else host
    prefix = Worker.redis_worker_namespace_prefix
    dead = []
    for key in sorted(_text(k) for k in r.smembers(REDIS_WORKER_KEYS)):
        name = key[len(prefix) :] if key.startswith(prefix) else key
        parsed = parse_worker_name(name)
        if parsed is None or parsed[0] != host:
            continue  # not rqp's, or another host's: never ours to judge
        _host, pid, token = parsed
        if token is None or token != start_token(pid):
            dead.append(name)  # a name without a start token is from before a restart
    return dead


def remove_dead_registrations(r: redis.Redis, host: str | None = None) -> list[str]:
    """Unregister this host's dead workers the way RQ's own ``register_death`` would; returns
    their names. Best effort: with Redis away, RQ's worker TTL still ends them in minutes."""
    try:
        names = dead_registrations(r, host)
        if not names:
            return []
        prefix = Worker.redis_worker_namespace_prefix
        queues = r.pipeline(transaction=False)
        for name in names:
            queues.hget(prefix + name, "queues")
        pipe = r.pipeline(transaction=True)
        for name, qs in zip(names, queues.execute(), strict=True):
            key = prefix + name
            pipe.srem(REDIS_WORKER_KEYS, key)
            for q in _text(qs or b"").split(","):
                if q:
                    pipe.srem(WORKERS_BY_QUEUE_KEY % q, key)
            pipe.delete(key, WORKER_EXECUTIONS_KEY_TEMPLATE.format(name))
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("could not remove dead workers' registrations (%s); RQ's worker TTL ends them", exc)
        return []
    log.warning("removed the registrations of %d dead workers of this host: %s", len(names), ", ".join(names))
    return names
