"""Finding the Redis primary through Sentinel, for every role and the CLI.

A deployment with a Redis replica and Sentinels names the *service* (Sentinel's master name) and
the Sentinels instead of one server, in either of two forms:

* ``RQP_REDIS_URL=redis+sentinel://[USER@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]``
  (``rediss+sentinel://`` for TLS on the data and the Sentinel links, both verified against
  ``RQP_REDIS_CA_FILE``); a Sentinel without a port is on 26379;
* ``RQP_REDIS_SENTINELS=HOST:PORT,HOST:PORT,...`` and ``RQP_REDIS_SERVICE=SERVICE``, with
  ``RQP_REDIS_URL`` still giving the scheme (``rediss://`` for TLS), the ACL user and the database
  (its host and port are then not used).

The data connection's password is ``RQP_REDIS_PASSWORD_FILE`` as always; the Sentinels' own ACL
user and password (Sentinel 6.2+ ``sentinel sentinel-user``/``sentinel-pass`` on the server side) are
``RQP_REDIS_SENTINEL_USERNAME`` and ``RQP_REDIS_SENTINEL_PASSWORD_FILE``, kept apart from the data
connection's (redis-py's ``sentinel_kwargs``).

The client is redis-py's ``Sentinel.master_for``: its ``SentinelConnectionPool`` asks the
Sentinels for the primary on every new connection, and a connection to a primary that was
demoted (``READONLY``, or a blocking command unblocked by the demotion) is dropped, so after a
failover every client -- RQ's workers, their pubsub listener and blocking dequeue included --
reconnects to the new primary by itself on its next retry. This module parses only; the client
is built in ``rqp.connect``.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["DEFAULT_SENTINEL_PORT", "SENTINEL_SCHEMES", "SentinelTarget", "parse_sentinel_url", "parse_sentinels"]

#: the port a Sentinel named without one listens on (Redis's own default for Sentinel)
DEFAULT_SENTINEL_PORT = 26379
#: URL schemes that name a Sentinel-managed service; the ``s`` one uses TLS on every link
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")

_URL_FIX = "use redis+sentinel://HOST:PORT,HOST:PORT/SERVICE/DB (rediss+sentinel:// for TLS)"


@dataclass(frozen=True)
class SentinelTarget:
    """Which Sentinel-managed primary to use and how to talk to it."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    tls: bool = False
    username: str | None = None

    def url(self) -> str:
        """The ``redis+sentinel://`` URL naming this target (no secret: passwords live in files)."""
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        user = f"{urllib.parse.quote(self.username)}@" if self.username else ""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
        return f"{scheme}://{user}{hosts}/{self.service}/{self.db}"


def parse_sentinels(text: str, what: str = "RQP_REDIS_SENTINELS") -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` (a port may be left out: 26379) as pairs; a ``ConfigError`` naming
    ``what`` for a list that is empty or has a port that is not one."""
    found: list[tuple[str, int]] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.startswith("["):  # [v6::addr]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest.removeprefix(":")
        else:
            host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
        if not host:
            raise ConfigError(f"{what}: {item!r} names no host; list them as HOST:PORT,HOST:PORT")
        if port_text and (not port_text.isdigit() or not 0 < int(port_text) < 65536):
            raise ConfigError(f"{what}: {item!r} has no valid port (1-65535); list them as HOST:PORT,HOST:PORT")
        found.append((host, int(port_text) if port_text else DEFAULT_SENTINEL_PORT))
    if not found:
        raise ConfigError(f"{what} names no Sentinel; list them as HOST:PORT,HOST:PORT (e.g. 10.0.0.4:26379)")
    return tuple(found)


def parse_sentinel_url(url: str) -> SentinelTarget:
    """A ``redis+sentinel://`` / ``rediss+sentinel://`` URL as a target; ``ConfigError`` naming
    what is wrong with it otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in SENTINEL_SCHEMES:
        raise ConfigError(f"RQP_REDIS_URL {url!r} is not a Sentinel URL; {_URL_FIX}")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if ":" in userinfo:
        raise ConfigError(
            "RQP_REDIS_URL carries a password; put the password in a file and name it in RQP_REDIS_PASSWORD_FILE"
        )
    sentinels = parse_sentinels(hosts, "RQP_REDIS_URL")
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ConfigError(f"RQP_REDIS_URL {url!r} names no service (Sentinel's master name); {_URL_FIX}")
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigError(f"RQP_REDIS_URL {url!r}: after the service comes only the database number; {_URL_FIX}")
    return SentinelTarget(
        sentinels=sentinels,
        service=urllib.parse.unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        tls=parts.scheme == "rediss+sentinel",
        username=urllib.parse.unquote(userinfo) or None,
    )
