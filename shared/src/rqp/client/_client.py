"""``rqp.Client``: submit workloads from code and get their handles back.

Settings come as the CLI's do: keyword overrides (the CLI's flags) over the environment
(``RQP_*``) over a TOML config file (``config=`` or ``RQP_CONFIG``) over the defaults. Submitting
packs exactly as ``rqp pack --submit`` does (``rqp.workload.pack``: a fresh data key, encrypted
streams, the manifest signed with the configured signing key), then hands it to a serving
scheduler. Nothing here prints; every failure is an ``rqp.RqpError`` with the CLI's one line.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from ..backends import Backends
from ..config import Settings
from ..connect import open_operator_key, open_signing_key
from ..control import set_priority
from ..errors import ConfigError, WorkloadError
from ..identity import actor
from ..ledger import Priority, announce_submission, submit, workloads
from ..signing import SigningKey
from ..workload import new_workload_id, pack
from ._handle import Workload
from ._sources import data_source

__all__ = ["Client", "script_source"]

#: a string longer than this is never taken for a script's path
_MAX_PATH = 4096


def script_source(script: str | os.PathLike[str] | bytes) -> Path | bytes:
    """``script`` as ``pack`` takes it: a path (a ``Path``, or a one-line string naming a file),
    or the script's source text (a string with a newline, or bytes)."""
    if isinstance(script, bytes):
        return script
    if isinstance(script, os.PathLike):
        return Path(script)
    if "\n" not in script and len(script) < _MAX_PATH and os.path.isfile(script):
        return Path(script)
    if "\n" not in script and script.endswith(".py"):
        raise WorkloadError(f"cannot read {script}: no such file (give a script's path or its source text)")
    return script.encode()


def _check_overrides(overrides: dict[str, Any]) -> None:
    """A keyword that is no setting (a typo) is an error here, not silently ignored: in code it
    cannot be a stray variable of someone else's."""
    known = {f.name for f in dataclasses.fields(Settings)}
    for name in overrides:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else "; see the README's Configuration table"
            raise ConfigError(f"rqp.Client got {name}=, which is not a setting{hint}")


class Client:
    """A connection to one rqp deployment.

    ``Client()`` reads the environment (and ``RQP_CONFIG``); ``Client(config="rqp.toml")`` a
    config file under it; ``Client(redis_url=..., blob_url=..., ...)`` overrides any setting by
    its ``Settings`` name; ``Client(settings=...)`` takes ready ``Settings``. Clients are opened
    on first use and kept: make one and reuse it. Not shared between threads (``AsyncClient``
    runs one in a worker thread)."""

    def __init__(
        self, config: str | os.PathLike[str] | None = None, *, settings: Settings | None = None, **overrides: Any
    ) -> None:
        if settings is not None and (config is not None or overrides):
            raise WorkloadError("give Client either settings= or a config file and overrides, not both")
        _check_overrides(overrides)
        self.settings = settings if settings is not None else Settings.load(config, **overrides)

    @cached_property
    def backends(self) -> Backends:
        """Redis, the blob store, the keys and the trust store, each opened on first use (a
        submit needs only the public KEK; reading results needs the private one)."""
        return Backends(self.settings, need_private=bool(self.settings.kek_file or self.settings.key_vault_key_id))

    @cached_property
    def signing_key(self) -> SigningKey:
        """The key submissions are signed with (``RQP_SIGNING_KEY_FILE`` / ``_VAULT_ID``)."""
        return open_signing_key(self.settings)

    def operator_key(self) -> SigningKey:
        """The key control requests are signed with: the operator key, else the signing key."""
        return open_operator_key(self.settings)

    def submit(
        self,
        data: Any,
        script: str | os.PathLike[str] | bytes,
        *,
        id: str | None = None,
        id_field: str | None = None,
        format: str | None = None,
        priority: str = Priority.NORMAL.value,
        delimiter: str = ",",
    ) -> Workload:
        """Pack, sign, upload and submit a workload; its handle.

        ``data``: a path (JSON Lines, CSV, Parquet -- by suffix, or ``format``), an iterable of
        JSON-able records (streamed into the encrypted upload, never all in memory), a pandas
        DataFrame or a pyarrow Table (rows as records). ``script``: a path or the script's source.
        ``id_field``: the field holding each record's own id (``rqp pack --id-field``)."""
        try:
            level = Priority(priority)
        except ValueError:
            raise WorkloadError(f"priority {priority!r} is not one of {', '.join(p.value for p in Priority)}") from None
        source = data_source(data, format)
        code = script_source(script)
        b = self.backends
        signer = self.signing_key
        wid = id or new_workload_id(source.stem)
        # a record that fails to encode stops the upload before its blob is stored (a blob store's
        # put_stream stores a blob whole or not at all): nothing of the workload is left behind
        pack(
            b.blobs, b.keys, wid, source.pieces, code, fmt=source.fmt, delimiter=delimiter, signer=signer,
            id_field=id_field,
        )  # fmt: skip
        if level is not Priority.NORMAL:
            # as 'rqp pack --priority': a request signed by the packer's key, audited
            set_priority(b.redis, signer, wid, level.value, actor(), b.blobs)
        submit(b.redis, wid)
        announce_submission(b.redis)  # a serving scheduler takes it now, not at its next look
        return Workload(self, wid)

    def workload(self, workload_id: str) -> Workload:
        """The handle of a workload by id (``WorkloadError`` when neither Redis nor the blob
        store knows it)."""
        from ..control import check_known  # noqa: PLC0415
        from ..workload import check_workload_id  # noqa: PLC0415

        check_workload_id(workload_id)
        check_known(self.backends.redis, lambda: self.backends.blobs, workload_id)
        return Workload(self, workload_id)

    def workloads(self) -> list[Workload]:
        """The workloads Redis knows (started by a scheduler), newest first."""
        return [Workload(self, wid) for wid in workloads(self.backends.redis, newest_first=True)]

    def as_completed(self, workload: Workload | str, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """``workload``'s results as its chunks commit (``Workload.stream``)."""
        handle = workload if isinstance(workload, Workload) else self.workload(workload)
        return handle.stream(timeout=timeout)

    def close(self) -> None:
        """Close the Redis connection (the client opens it again when used)."""
        b = self.__dict__.pop("backends", None)
        if b is not None and "redis" in b.__dict__:
            b.redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
