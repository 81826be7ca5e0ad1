"""The Redis client of ``RQP_REDIS_AUTH=entra``: closing it also stops its token renewal.

Why: redis-entraid's credential provider renews the Entra token on a background thread of its
own (``TokenManager``), and redis-py's ``Redis.close`` only disconnects the pool. Without this, a
role (or a test) that closes its client leaves the renewal running: it keeps asking the identity
endpoint for tokens nobody uses, and once the credential is gone each renewal prints an
"Exception in callback TokenManager._renew_token()" traceback.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.credentials import StreamingCredentialProvider

__all__ = ["EntraRedis", "stop_token_renewal"]


def stop_token_renewal(provider: StreamingCredentialProvider) -> None:
    """Stop the background token renewal of ``provider`` (redis-entraid keeps its
    ``TokenManager`` in ``_token_mgr`` and offers no public way to stop it)."""
    manager = getattr(provider, "_token_mgr", None)
    if manager is not None:
        manager.stop()


class EntraRedis(redis.Redis):
    """``redis.Redis`` whose ``close`` stops the Entra token renewal as well. Built like a
    ``redis.Redis`` (RQ rebuilds a client from its class and pool): the provider is the one given,
    else its pool's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pool = kwargs.get("connection_pool")
        provider = kwargs.get("credential_provider")
        if provider is None and pool is not None:
            provider = pool.connection_kwargs.get("credential_provider")
        self._entra_provider: StreamingCredentialProvider | None = provider

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._entra_provider is not None:
                stop_token_renewal(self._entra_provider)
