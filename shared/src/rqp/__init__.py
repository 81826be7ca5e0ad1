"""rqp: secure, high-throughput parallel batch processing on Redis and RQ.

The public surface is re-exported here; the modules behind it are small and private to rqp.
The Python API (``rqp.Client``, ``rqp.Workload``, ``rqp.AsyncClient``; README "From Python") is
imported on first use, so a script's ``from rqp import PermanentError`` stays light.
"""

from typing import TYPE_CHECKING, Any

from .config import Settings
from .errors import (
    BlobNotFoundError,
    ConfigError,
    ForbiddenJobError,
    IntegrityError,
    KeyProviderError,
    PermanentError,
    RecordError,
    RedisUnavailableError,
    RoundUncheckedError,
    RqpError,
    ScriptError,
    StorageError,
    StorageUnavailableError,
    WorkloadError,
    WrongKeyError,
)

if TYPE_CHECKING:
    from .client import AsyncClient, AsyncWorkload, Client, WaitTimeoutError, Workload, WorkloadStatus
    from .summary import Failure

__version__ = "0.1.0"

#: the Python API's names, imported on first use: ``from rqp import PermanentError`` in a
#: confined script process must not load Redis, RQ and the blob stores
_LAZY = {
    "AsyncClient": "client",
    "AsyncWorkload": "client",
    "Client": "client",
    "WaitTimeoutError": "client",
    "Workload": "client",
    "WorkloadStatus": "client",
    "Failure": "summary",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rqp' has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncClient",
    "AsyncWorkload",
    "BlobNotFoundError",
    "Client",
    "ConfigError",
    "Failure",
    "ForbiddenJobError",
    "IntegrityError",
    "KeyProviderError",
    "PermanentError",
    "RecordError",
    "RedisUnavailableError",
    "RoundUncheckedError",
    "RqpError",
    "ScriptError",
    "Settings",
    "StorageError",
    "StorageUnavailableError",
    "WaitTimeoutError",
    "Workload",
    "WorkloadError",
    "WorkloadStatus",
    "WrongKeyError",
    "__version__",
]
