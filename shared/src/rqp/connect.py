"""Turn ``Settings`` into live clients: Redis, blob store, message queue, key provider.

Each backend is chosen by its URL scheme; cloud backends are imported only when named, so the
local backend needs no cloud SDK at import time.
"""

from __future__ import annotations

import socket
import sys
import time
import urllib.parse
from pathlib import Path

import redis
import redis.sentinel

from .config import Settings
from .errors import ConfigError, RedisUnavailableError
from .keys import KeyProvider, LocalKeyProvider
from .redis_auth import REDIS_AUTH_ENTRA, TokenCredential, entra_redis
from .signing import LocalSigningKey, SigningKey, TrustStore
from .storage import BlobStore, FileBlobStore, MessageQueue, RedisMessageQueue
from .storage.retention import Retention
from .storage.retrying import RetryingBlobStore

__all__ = [
    "connect_redis",
    "open_blob_store",
    "open_key_provider",
    "open_message_queue",
    "open_operator_key",
    "open_operator_trust",
    "open_signing_key",
    "open_trust_store",
]

REDIS_SOCKET_TIMEOUT = 30.0
REDIS_CONNECT_TIMEOUT = 5.0
#: how long a start asks again while Redis's name fails to resolve temporarily (``_ping``)
NAME_RETRY_SECONDS = 10.0
NAME_RETRY_PAUSE = 0.2
#: what redis-py says of a lookup that failed temporarily (EAI_AGAIN)
_TEMPORARY_NAME_FAILURE = "Temporary failure in name resolution"
#: each Sentinel asked for the primary gets this long before the next one is asked
SENTINEL_SOCKET_TIMEOUT = 2.0
#: a Redis that vanished without a word (its VM powered off or cut off: packets dropped, no
#: reset) is given up on after about this long -- TCP keepalive probes on an idle connection,
#: TCP_USER_TIMEOUT on one with a request unanswered at the TCP level -- instead of the read
#: timeout (30 s per pooled connection) or the kernel's keepalive defaults (hours). After a
#: failover every client then asks the Sentinels again within seconds; a slow server is unaffected
#: (its kernel acknowledges the request and the probes at once).
REDIS_DEAD_PEER_SECONDS = 5


def _dead_peer_options() -> dict[int, int]:
    """``socket_keepalive_options`` bounding how long a silent peer goes unnoticed (Linux names;
    an option this platform lacks is left at its default)."""
    wanted = {
        "TCP_KEEPIDLE": 2,
        "TCP_KEEPINTVL": 1,
        "TCP_KEEPCNT": 3,
        "TCP_USER_TIMEOUT": REDIS_DEAD_PEER_SECONDS * 1000,
    }
    return {getattr(socket, name): value for name, value in wanted.items() if hasattr(socket, name)}


def connect_redis(
    settings: Settings, *, check: bool = True, token_credential: TokenCredential | None = None
) -> redis.Redis:
    """A client for the coordinating Redis; with ``check``, fail now with one clear line if it is
    unreachable, refuses the password, or has none while ``allow_insecure_redis`` is off.
    ``RQP_REDIS_AUTH=entra``: it logs in with Microsoft Entra tokens (``rqp.redis_auth``; from
    ``token_credential`` when given, else the VM's managed identity)."""
    kwargs: dict = {
        "socket_timeout": REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
        "health_check_interval": 30,
        "socket_keepalive": True,
        "socket_keepalive_options": _dead_peer_options(),
    }
    password = settings.read_secret(settings.redis_password_file, "Redis password")
    if password:
        kwargs["password"] = password
    if settings.redis_tls:
        if settings.redis_ca_file:
            kwargs["ssl_ca_certs"] = str(settings.redis_ca_file)
        kwargs["ssl_cert_reqs"] = "required"
        kwargs["ssl_check_hostname"] = True  # explicit: the server certificate must name the host in the URL
    if settings.redis_auth == REDIS_AUTH_ENTRA:
        return _checked_entra(settings, entra_redis(settings, kwargs, token_credential), check)
    client = _open_redis(settings, kwargs)
    if check:
        try:
            _ping(client)
        except redis.AuthenticationError:
            if not password and not urllib.parse.urlsplit(settings.redis_url).password:
                raise RedisUnavailableError(
                    f"Redis at {settings.redis_url_safe} requires a password; set RQP_REDIS_PASSWORD_FILE"
                ) from None
            raise RedisUnavailableError(
                f"Redis at {settings.redis_url_safe} refused the password; check RQP_REDIS_PASSWORD_FILE"
            ) from None
        except redis.ResponseError as exc:
            if "NOAUTH" in str(exc):
                raise RedisUnavailableError(
                    f"Redis at {settings.redis_url_safe} requires a password; set RQP_REDIS_PASSWORD_FILE"
                ) from None
            raise
        except redis.sentinel.MasterNotFoundError as exc:
            target = settings.redis_sentinel
            service = target.service if target else "?"
            why = "no Sentinel answered" if " : " in str(exc) else f"no Sentinel names a primary for {service!r}"
            fix = "RQP_REDIS_SENTINELS / RQP_REDIS_SERVICE" if settings.redis_sentinels.strip() else "RQP_REDIS_URL"
            raise RedisUnavailableError(
                f"cannot reach Redis at {settings.redis_url_safe} ({why}); start the Sentinels or fix {fix}"
            ) from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            reason = str(exc).split("\n")[0].rstrip(".")
            fix = "RQP_REDIS_SENTINELS / RQP_REDIS_SERVICE" if settings.redis_sentinels.strip() else "RQP_REDIS_URL"
            raise RedisUnavailableError(
                f"cannot reach Redis at {settings.redis_url_safe} ({reason}); start it or fix {fix}"
            ) from None
        if (
            not settings.allow_insecure_redis
            and not password
            and not urllib.parse.urlsplit(settings.redis_url).password
        ):
            raise RedisUnavailableError(
                f"Redis at {settings.redis_url_safe} is used without a password; set RQP_REDIS_PASSWORD_FILE, "
                f"or RQP_ALLOW_INSECURE_REDIS=true to accept the risk"
            )
    if check and password and not settings.allow_insecure_redis and _accepts_anyone(settings, kwargs):
        raise RedisUnavailableError(
            f"Redis at {settings.redis_url_safe} accepts clients without a password although "
            "RQP_REDIS_PASSWORD_FILE is set; set requirepass (or disable the default user) on the server"
        )
    return client


def _open_redis(settings: Settings, kwargs: dict, *, anonymous: bool = False) -> redis.Redis:
    """One server by URL, or the primary of a Sentinel-managed service (``rqp.sentinel``): the one
    place a coordinating-Redis client is made, so every role, RQ's workers and the CLI get both."""
    target = settings.redis_sentinel
    if target is None:
        return redis.Redis.from_url(settings.redis_url, **kwargs)
    data = dict(kwargs, db=target.db)
    if not anonymous and target.username:
        data["username"] = target.username
    if target.tls:
        data["ssl"] = True
    return redis.sentinel.Sentinel(
        target.sentinels, sentinel_kwargs=_sentinel_kwargs(settings, target.tls), **data
    ).master_for(target.service)


def _sentinel_kwargs(settings: Settings, tls: bool) -> dict:
    """How the Sentinels themselves are reached: their own ACL user and password (never the data
    connection's), the same TLS verification, short timeouts (the next Sentinel is tried)."""
    kwargs: dict = {"socket_timeout": SENTINEL_SOCKET_TIMEOUT, "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT}
    if settings.redis_sentinel_username:
        kwargs["username"] = settings.redis_sentinel_username
    password = settings.read_secret(settings.redis_sentinel_password_file, "Sentinel password")
    if password:
        kwargs["password"] = password
    if tls:
        kwargs["ssl"] = True
        kwargs["ssl_cert_reqs"] = "required"
        kwargs["ssl_check_hostname"] = True
        if settings.redis_ca_file:
            kwargs["ssl_ca_certs"] = str(settings.redis_ca_file)
    return kwargs


def _checked_entra(settings: Settings, client: redis.Redis, check: bool) -> redis.Redis:
    """The Entra client, with ``check``: pinged now, so a missing data-access policy or an
    unreachable cache stops the role at start with one line."""
    if not check:
        return client
    try:
        _entra_ping(settings, client)
    except BaseException:
        client.close()  # stops the token renewal the failed login may have started
        raise
    return client


def _entra_ping(settings: Settings, client: redis.Redis) -> None:
    """``client.ping()``, its failure turned into one line naming the fix."""
    from redis.auth.err import RequestTokenErr  # noqa: PLC0415 - redis-py >= 5.3, needed by redis-entraid

    try:
        client.ping()
    except RequestTokenErr as exc:
        reason = str(exc).split("\n")[0].rstrip(".")
        raise RedisUnavailableError(
            f"no Microsoft Entra token for Redis at {settings.redis_url_safe} ({reason}); give this VM the managed "
            "identity RQP_REDIS_ENTRA_CLIENT_ID names (or log in with 'az login')"
        ) from None
    except (redis.AuthenticationError, redis.ResponseError) as exc:
        reason = str(exc).split("\n")[0].rstrip(".")
        raise RedisUnavailableError(
            f"Redis at {settings.redis_url_safe} refused this Entra identity ({reason}); assign it a data access "
            "policy on the cache (compose/azure/azuredeploy.json managedRedis) or fix RQP_REDIS_ENTRA_CLIENT_ID"
        ) from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        reason = str(exc).split("\n")[0].rstrip(".")
        raise RedisUnavailableError(
            f"cannot reach Redis at {settings.redis_url_safe} ({reason}); check RQP_REDIS_URL "
            "(rediss://NAME.redis.cache.windows.net:6380/0) and the cache's private endpoint"
        ) from None


def _accepts_anyone(settings: Settings, kwargs: dict) -> bool:
    """Whether a client with no credentials gets in: redis-py sends AUTH only when asked, so a server
    left without requirepass would otherwise be used silently by roles that believe it is guarded."""
    anonymous = {k: v for k, v in kwargs.items() if k not in ("password", "username")}
    parts = urllib.parse.urlsplit(settings.redis_url)
    if settings.redis_sentinel is not None:
        probe = _open_redis(settings, {**anonymous, "username": None}, anonymous=True)
    else:
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        probe = redis.Redis.from_url(url, **anonymous)
    try:
        _ping(probe)
    except (redis.AuthenticationError, redis.ResponseError):
        return False
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        reason = str(exc).split("\n")[0].rstrip(".")
        raise RedisUnavailableError(
            f"cannot reach Redis at {settings.redis_url_safe} to check that it refuses clients without a password "
            f"({reason}); start it or fix RQP_REDIS_URL"
        ) from None
    finally:
        probe.close()
    return True


def _ping(client: redis.Redis) -> None:
    """PING, asking again for up to ``NAME_RETRY_SECONDS`` while the server's name fails to resolve
    *temporarily* (EAI_AGAIN): a container network's DNS (podman's aardvark-dns) answers so while
    it reloads, which it does whenever a container on the host starts or stops -- a role starting
    then crashed with a traceback and was restarted (a CI run: the console's restarts hid it from
    a test). Any other error, or one that outlasts the window, is raised."""
    end = time.monotonic() + NAME_RETRY_SECONDS
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError as exc:
            if _TEMPORARY_NAME_FAILURE not in str(exc) or time.monotonic() > end:
                raise
        time.sleep(NAME_RETRY_PAUSE)


def open_blob_store(url: str, *, retry_seconds: float | None = None) -> BlobStore:
    """The blob store named by ``url``; with ``retry_seconds``, transient outages are ridden out."""
    store = _open_blob_store(url)
    return RetryingBlobStore(store, retry_seconds) if retry_seconds else store


def _open_blob_store(url: str) -> BlobStore:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "":
        return FileBlobStore(Path(url))
    if parts.scheme == "file":
        return FileBlobStore(Path(parts.netloc + parts.path))  # file:///abs or file://./relative
    if parts.scheme in ("azure-blob", "azblob"):
        from .azure.blob import AzureBlobStore  # noqa: PLC0415 - optional backend

        return AzureBlobStore.from_url(url)
    raise ConfigError(
        f"RQP_BLOB_URL scheme {parts.scheme!r} is not supported; use file:///path or azure-blob://account/container"
    )


def open_message_queue(
    settings: Settings, client: redis.Redis | None = None, reads_messages: bool = True
) -> MessageQueue:
    """The queues' backend. ``reads_messages=False``: this role's Redis user may only append
    (the metrics logger), so the streams' retention trims without reading a message."""
    url = settings.queue_url
    if url in ("", "redis"):
        client = client if client is not None else connect_redis(settings)
        return RedisMessageQueue(client, retention=Retention.from_settings(settings, reads=reads_messages))
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme in ("azure-queue", "azqueue"):
        from .azure.queue import AzureMessageQueue  # noqa: PLC0415 - optional backend

        return AzureMessageQueue.from_url(url)
    raise ConfigError(f"RQP_QUEUE_URL {url!r} is not supported; use 'redis' or azure-queue://account")


#: where ``rqp keygen`` writes the public KEK by default; ``rqp pack`` uses it when nothing else is configured
KEYGEN_PUBLIC_KEK = Path("keys/kek.pub.pem")


def open_key_provider(settings: Settings, *, need_private: bool = True) -> KeyProvider:
    """The KEK: a Key Vault key, the private PEM, or (``need_private=False``: packing) a public PEM.
    When more than one is configured, the most explicit wins (a command-line option over the
    environment over a config file; ``Settings.rank``); between equals, Key Vault, then the private
    PEM, then the public one. A packer with none configured gets ``keys/kek.pub.pem`` when
    ``rqp keygen`` left one there."""
    choices: list[tuple[int, int, str]] = []
    if settings.key_vault_key_id:
        choices.append((settings.rank("key_vault_key_id"), 2, "vault"))
    if settings.kek_file is not None:
        choices.append((settings.rank("kek_file"), 1, "private"))
    if not need_private and settings.kek_public_file is not None:
        choices.append((settings.rank("kek_public_file"), 0, "public"))
    kind = max(choices)[2] if choices else None
    if kind == "vault":
        from .azure.keyvault import AzureKeyVaultProvider  # noqa: PLC0415 - optional backend

        assert settings.key_vault_key_id is not None
        return AzureKeyVaultProvider.from_key_id(settings.key_vault_key_id)
    if kind == "private":
        assert settings.kek_file is not None
        return LocalKeyProvider(private_key_file=settings.kek_file)
    if kind == "public":
        assert settings.kek_public_file is not None
        return LocalKeyProvider(public_key_file=settings.kek_public_file)
    if need_private:
        raise ConfigError(
            "no key-encryption key configured: set RQP_KEK_FILE (or pass --kek) to the private PEM "
            "(create one with 'rqp keygen')"
        )
    if KEYGEN_PUBLIC_KEK.is_file():
        print(
            f"rqp: note: no KEK configured; using {KEYGEN_PUBLIC_KEK} (where 'rqp keygen' writes it): pass "
            "--public-key or set RQP_KEK_PUBLIC_FILE to choose another",
            file=sys.stderr,
        )
        return LocalKeyProvider(public_key_file=KEYGEN_PUBLIC_KEK)
    raise ConfigError(
        "no key-encryption key configured: pass --public-key PUB.pem, or set RQP_KEK_PUBLIC_FILE (or RQP_KEK_FILE); "
        "create a key pair with 'rqp keygen' (it writes keys/kek.pub.pem)"
    )


def open_trust_store(settings: Settings) -> TrustStore:
    """The submitters this role accepts workloads from; every role that opens a workload needs it."""
    if settings.trusted_signers_file is None:
        raise ConfigError(
            "no trusted signers configured: set RQP_TRUSTED_SIGNERS_FILE to the submitters' public keys "
            "(the .pub.pem of 'rqp keygen --signing'); rqp runs only signed workloads"
        )
    return TrustStore.from_file(settings.trusted_signers_file, settings.revoked_signers_file)


def open_signing_key(settings: Settings) -> SigningKey:
    """The key ``rqp pack`` (and ``rqp rotate-key``) signs with."""
    if settings.signing_key_vault_id:
        from .azure.signing import KeyVaultSigningKey  # noqa: PLC0415 - optional backend

        return KeyVaultSigningKey.from_key_id(settings.signing_key_vault_id)
    if settings.signing_key_file is None:
        raise ConfigError(
            "no signing key configured: set RQP_SIGNING_KEY_FILE (or pass --signing-key) to your Ed25519 key from "
            "'rqp keygen --signing', or RQP_SIGNING_KEY_VAULT_ID to a Key Vault EC P-256 key"
        )
    return LocalSigningKey(settings.signing_key_file)


def open_operator_key(settings: Settings) -> SigningKey:
    """The key control requests are signed with: the operator key, or else the submitter's own
    signing key (which the roles accept for the workloads it signed)."""
    if settings.operator_key_vault_id:
        from .azure.signing import KeyVaultSigningKey  # noqa: PLC0415 - optional backend

        return KeyVaultSigningKey.from_key_id(settings.operator_key_vault_id)
    if settings.operator_key_file is not None:
        return LocalSigningKey(settings.operator_key_file)
    if settings.signing_key_file is None and not settings.signing_key_vault_id:
        raise ConfigError(
            "no key to sign this request with: set RQP_OPERATOR_KEY_FILE to an operator key ('rqp keygen --operator'), "
            "or RQP_SIGNING_KEY_FILE to the key that signed the workload"
        )
    return open_signing_key(settings)


def open_operator_trust(settings: Settings) -> TrustStore | None:
    """The operators whose requests count (None: only each workload's own submitter)."""
    if settings.trusted_operators_file is None:
        return None
    return TrustStore.from_file(settings.trusted_operators_file, settings.revoked_signers_file)
