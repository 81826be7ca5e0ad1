"""Logging in to a managed Redis (Azure Cache for Redis, Azure Managed Redis) with Microsoft Entra ID.

Why: a managed Redis is the alternative to running Redis (and its replica and Sentinels) on the
scheduler VM. There, the per-role ACL users and their password files give way to Entra
principals: each VM's managed identity gets a data-access policy on the cache, and a role logs in
with its identity's *object id* as the user name and a short-lived access token as the password.
No password is ever written to a VM, and a stolen token is worthless within the hour.

``RQP_REDIS_AUTH=entra`` turns it on for every role and the CLI (``rqp.connect.connect_redis``,
the one place Redis clients are made). The token comes from ``azure-identity``: the VM's
user-assigned managed identity when ``RQP_REDIS_ENTRA_CLIENT_ID`` names it, else
``DefaultAzureCredential`` (a system-assigned identity, workload identity, ``az login``). The
``redis-entraid`` credential provider turns it into Redis credentials and refreshes it in the
background (at ``ENTRA_REFRESH_RATIO`` of its lifetime); redis-py then re-authenticates the
idle pooled connections in place (``AUTH`` with the new token) and marks the busy ones to do so
when released, and a connection opened later (after a failover, a dropped link, a worker
process started afterwards) authenticates with the current token. A client built in one process
and used in a forked child has no refresh thread there: its new connections still fetch a
current token, and a connection the server drops when its token expires is reopened by
redis-py's retry with a fresh one.

Tokens are bearer secrets: they are sent only over TLS (``rediss://``, port 6380 on Azure Cache
for Redis, 10000 on Azure Managed Redis) unless ``RQP_ALLOW_INSECURE_REDIS`` accepts the risk
(a local test Redis).

``rqp.redis_acl.managed_redis_permissions`` renders the roles' ACL (``role_rules``, the one home
of the least-privilege rules) in the Redis 6.0 syntax that Azure Cache for Redis' custom data
access policies accept; ``compose/azure/azuredeploy.json`` carries the result (a test keeps the
two equal).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ConfigError

if TYPE_CHECKING:  # rqp.config imports this module, and must not pull in redis (nor any Azure SDK)
    import redis
    from redis.credentials import StreamingCredentialProvider

    from .config import Settings

__all__ = [
    "DEFAULT_REDIS_AUTH",
    "DEFAULT_REDIS_ENTRA_SCOPE",
    "ENTRA_REFRESH_RATIO",
    "REDIS_AUTH_ENTRA",
    "REDIS_AUTH_MODES",
    "REDIS_AUTH_PASSWORD",
    "TokenCredential",
    "check_redis_auth",
    "entra_credential",
    "entra_credential_provider",
    "entra_redis",
]

REDIS_AUTH_PASSWORD = "password"
REDIS_AUTH_ENTRA = "entra"
REDIS_AUTH_MODES = (REDIS_AUTH_PASSWORD, REDIS_AUTH_ENTRA)
DEFAULT_REDIS_AUTH = REDIS_AUTH_PASSWORD
#: the audience of Azure Cache for Redis and Azure Managed Redis access tokens
DEFAULT_REDIS_ENTRA_SCOPE = "https://redis.azure.com/.default"
#: renew a token when this share of its lifetime has passed (Entra tokens live ~1-24 h)
ENTRA_REFRESH_RATIO = 0.7
#: ... and at the latest this long before it expires
ENTRA_REFRESH_BEFORE_EXPIRY_MS = 0
#: how long one token request may take, and how often it is tried, before the renewal fails
#: (the identity endpoint answers in milliseconds; the old token stays valid meanwhile)
ENTRA_TOKEN_REQUEST_TIMEOUT_MS = 10_000
ENTRA_TOKEN_ATTEMPTS = 3
ENTRA_TOKEN_RETRY_DELAY_MS = 500

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_INSTALL_HINT = "pip install 'rqp[entra]' (or 'rqp[azure]')"


class TokenCredential(Protocol):
    """What azure-identity's credentials offer (``get_token`` returning an ``AccessToken``)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...


def check_redis_auth(
    mode: str,
    *,
    client_id: str | None,
    scope: str,
    redis_url: str,
    password_file: object | None,
    allow_insecure: bool,
) -> None:
    """One clear line for an Entra setting that would otherwise fail at the first login."""
    if mode not in REDIS_AUTH_MODES:
        raise ConfigError(
            f"RQP_REDIS_AUTH must be {' or '.join(REDIS_AUTH_MODES)}, got {mode!r}; "
            "use entra for Azure Cache for Redis / Azure Managed Redis with Microsoft Entra ID"
        )
    if mode != REDIS_AUTH_ENTRA:
        if client_id:
            raise ConfigError(
                "RQP_REDIS_ENTRA_CLIENT_ID is set but RQP_REDIS_AUTH is not entra; set RQP_REDIS_AUTH=entra or unset it"
            )
        return
    if password_file is not None:
        raise ConfigError(
            "RQP_REDIS_AUTH=entra logs in with Microsoft Entra tokens, not a password; unset RQP_REDIS_PASSWORD_FILE"
        )
    if client_id is not None and not _GUID.match(client_id):
        raise ConfigError(
            f"RQP_REDIS_ENTRA_CLIENT_ID must be the managed identity's client id (a GUID such as "
            f"00000000-0000-0000-0000-000000000000: 'az identity show --query clientId'), got {client_id!r}"
        )
    if not (scope.startswith("https://") and scope.endswith("/.default")):
        raise ConfigError(
            f"RQP_REDIS_ENTRA_SCOPE must be an https://.../.default scope, got {scope!r}; "
            f"leave it unset for {DEFAULT_REDIS_ENTRA_SCOPE}"
        )
    if not redis_url.startswith("rediss://") and not allow_insecure:
        raise ConfigError(
            "RQP_REDIS_AUTH=entra sends bearer tokens: use TLS, RQP_REDIS_URL=rediss://NAME.redis.cache.windows.net:6380/0 "
            "(or RQP_ALLOW_INSECURE_REDIS=true for a local test Redis)"
        )


def entra_credential(settings: Settings) -> TokenCredential:
    """The azure-identity credential a role's tokens come from: the user-assigned managed
    identity ``RQP_REDIS_ENTRA_CLIENT_ID`` names, else ``DefaultAzureCredential``."""
    try:
        from azure.identity import DefaultAzureCredential, ManagedIdentityCredential  # noqa: PLC0415 - optional
    except ImportError:
        raise ConfigError(f"RQP_REDIS_AUTH=entra needs azure-identity and redis-entraid: {_INSTALL_HINT}") from None
    if settings.redis_entra_client_id:
        return ManagedIdentityCredential(client_id=settings.redis_entra_client_id)
    return DefaultAzureCredential()


def entra_credential_provider(
    settings: Settings, credential: TokenCredential | None = None
) -> StreamingCredentialProvider:
    """redis-entraid's streaming provider over ``credential`` (default: ``entra_credential``):
    user name = the token's ``oid`` claim, password = the token, renewed in the background."""
    try:
        from redis.auth.token_manager import RetryPolicy, TokenManagerConfig  # noqa: PLC0415 - optional
        from redis_entraid.cred_provider import EntraIdCredentialsProvider  # noqa: PLC0415 - optional
        from redis_entraid.identity_provider import DefaultAzureCredentialProvider  # noqa: PLC0415 - optional
    except ImportError:
        raise ConfigError(f"RQP_REDIS_AUTH=entra needs redis-entraid: {_INSTALL_HINT}") from None
    identity = DefaultAzureCredentialProvider(
        credential if credential is not None else entra_credential(settings), (settings.redis_entra_scope,)
    )
    config = TokenManagerConfig(
        ENTRA_REFRESH_RATIO,
        ENTRA_REFRESH_BEFORE_EXPIRY_MS,
        ENTRA_TOKEN_REQUEST_TIMEOUT_MS,
        RetryPolicy(ENTRA_TOKEN_ATTEMPTS, ENTRA_TOKEN_RETRY_DELAY_MS),
    )
    provider: StreamingCredentialProvider = EntraIdCredentialsProvider(identity, config)
    return provider


def entra_redis(settings: Settings, kwargs: dict[str, Any], credential: TokenCredential | None = None) -> redis.Redis:
    """A client logging in with Entra tokens. The provider is given to ``redis.Redis`` itself
    (not only to the pool, as ``Redis.from_url`` would): only then does redis-py register the
    re-authentication of pooled connections when the token is renewed. Closing it stops the
    token renewal too (``rqp.entra_client``), so a role that closes its client leaves no renewal
    thread asking for tokens behind."""
    import redis  # noqa: PLC0415 - see the TYPE_CHECKING import

    from .entra_client import EntraRedis  # noqa: PLC0415 - imports redis

    provider = entra_credential_provider(settings, credential)
    pool = redis.ConnectionPool.from_url(settings.redis_url, credential_provider=provider, **kwargs)
    client = EntraRedis(connection_pool=pool, credential_provider=provider)
    client.auto_close_connection_pool = True
    return client
