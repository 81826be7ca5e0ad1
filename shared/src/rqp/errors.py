"""The one error tree of rqp.

Every failure a user can cause or meet is an ``RqpError`` subclass whose ``str()`` is a single
line naming the thing that is wrong and how to fix it. The CLIs print exactly that line and exit
with ``exit_code``; nothing above the storage layer swallows an error and returns a flag.

    RqpError
    ├── ConfigError            settings missing or invalid
    ├── KeyProviderError       key missing, unreadable, or the wrong key
    │   └── WrongKeyError
    ├── IntegrityError         ciphertext, manifest or blob tampered with or truncated
    ├── StorageError           blob store / message queue trouble
    │   ├── BlobNotFoundError
    │   └── StorageUnavailableError   (transient: retried before it surfaces)
    ├── RedisUnavailableError
    ├── WorkloadError          unknown workload, bad workload id, workload already packed
    ├── ScriptError            processing script failed to load or lacks its entry point
    ├── RecordError            one record is malformed (recorded as a failed record)
    └── ForbiddenJobError      a job rqp's scheduler did not create (rejected before user code)
"""

from __future__ import annotations

__all__ = [
    "BlobNotFoundError",
    "ConfigError",
    "ForbiddenJobError",
    "IntegrityError",
    "KeyProviderError",
    "PermanentError",
    "RecordError",
    "RedisUnavailableError",
    "RoundUncheckedError",
    "RqpError",
    "ScriptError",
    "StorageError",
    "StorageUnavailableError",
    "WorkloadError",
    "WrongKeyError",
]


class RqpError(Exception):
    """Base of every error rqp raises on purpose."""

    exit_code = 1

    def __str__(self) -> str:  # one line, always
        text = super().__str__()
        return " ".join(text.split())


class ConfigError(RqpError):
    exit_code = 2


class KeyProviderError(RqpError):
    exit_code = 3


class WrongKeyError(KeyProviderError):
    pass


class IntegrityError(RqpError):
    exit_code = 4


class StorageError(RqpError):
    exit_code = 5


class BlobNotFoundError(StorageError):
    pass


class StorageUnavailableError(StorageError):
    pass


class RedisUnavailableError(RqpError):
    exit_code = 6


class WorkloadError(RqpError):
    exit_code = 7


class ScriptError(RqpError):
    exit_code = 8


class RecordError(RqpError):
    exit_code = 9


class ForbiddenJobError(RqpError):
    exit_code = 10


class RoundUncheckedError(IntegrityError):
    """The results match their signed root, but no sealed head in Redis says that root's round is
    the current one (``rqp.round_marker.round_note``): ``rqp verify`` exits with this code unless
    ``--any-round`` accepts an unchecked round (the client: ``verify(any_round=True)``)."""

    exit_code = 11


class PermanentError(Exception):
    """Raised by a workload's *script* (not by rqp) to fail a record at once, without retries:
    ``from rqp import PermanentError``. Not an ``RqpError``: it is the script's verdict on its
    record, reported in the record's status like any other exception."""
