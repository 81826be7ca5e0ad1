"""rqp: secure, high-throughput parallel batch processing on Redis and RQ.

The public surface is re-exported here; the modules behind it are small and private to rqp.
"""

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
    RqpError,
    ScriptError,
    StorageError,
    StorageUnavailableError,
    WorkloadError,
    WrongKeyError,
)

__version__ = "0.1.0"

__all__ = [
    "BlobNotFoundError",
    "ConfigError",
    "ForbiddenJobError",
    "IntegrityError",
    "KeyProviderError",
    "PermanentError",
    "RecordError",
    "RedisUnavailableError",
    "RqpError",
    "ScriptError",
    "Settings",
    "StorageError",
    "StorageUnavailableError",
    "WorkloadError",
    "WrongKeyError",
    "__version__",
]
